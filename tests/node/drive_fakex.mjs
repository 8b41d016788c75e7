// Drives FakeX with the unmodified twitter-api-v2 library and prints what it saw as one JSON object.
// The library keeps its hard-coded host (api.x.com); an https.Agent pins that host to FakeX's port and
// trusts FakeX's CA, as DNS pinning would.
//
//   node drive_fakex.mjs '{"port": ..., "ca": ..., "appKey": ..., ...}'
import fs from "node:fs";
import https from "node:https";
import tls from "node:tls";
import { ApiResponseError, TwitterApi } from "twitter-api-v2";

const cfg = JSON.parse(process.argv[2]);
const ca = fs.readFileSync(cfg.ca);

class PinnedAgent extends https.Agent {
  createConnection(options) {
    const servername = options.servername || options.host;
    return tls.connect({ ...options, host: "127.0.0.1", port: cfg.port, servername, ca });
  }
}

const settings = { httpAgent: new PinnedAgent({ keepAlive: false }) };
const oauth1 = new TwitterApi(
  { appKey: cfg.appKey, appSecret: cfg.appSecret, accessToken: cfg.accessToken, accessSecret: cfg.accessSecret },
  settings,
);
const oauth2 = new TwitterApi(cfg.bearer, settings);

/** [status, what the error says] of a call that must fail with X's answer. */
async function refused(call, pick) {
  try {
    await call();
  } catch (err) {
    if (err instanceof ApiResponseError) return [err.code, pick(err)];
    throw err;
  }
  throw new Error("the call succeeded");
}

const seen = {};
seen.me = (await oauth2.v2.me()).data;
seen.verify = (await oauth1.v1.verifyCredentials()).screen_name;
const post = await oauth1.v2.tweet("hello from twitter-api-v2");
seen.post = post.data.id;
seen.reply = (await oauth2.v2.reply("a reply", post.data.id)).data.id;
seen.poll = (await oauth1.v2.tweet({ poll: { options: ["red", "blue"], duration_minutes: 30 } })).data.id;
seen.bookmark = (await oauth2.v2.bookmark(post.data.id)).data;
seen.oauth1Bookmark = await refused(
  () => oauth1.v2.post(`users/${cfg.userId}/bookmarks`, { tweet_id: post.data.id }),
  (err) => err.data.title,
);
seen.duplicate = await refused(() => oauth1.v2.tweet("hello from twitter-api-v2"), (err) => err.data.detail);
seen.notFound = await refused(() => oauth2.v2.get("no/such/route"), (err) => err.data.errors[0].code);
seen.unauthorized = await refused(() => new TwitterApi("not-a-token", settings).v2.me(), (err) => err.data.title);
// FakeX allows this user one verify_credentials per window: the library parses the 429's reset header.
const [status, limit] = await refused(() => oauth1.v1.verifyCredentials(), (err) => err);
seen.limited = [status, limit.rateLimit.reset, limit.headers["x-rate-limit-reset"]];
console.log(JSON.stringify(seen));
