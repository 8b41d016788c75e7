-- Store a user's new OAuth 2.0 pair, fenced: only if the stored pair still holds the refresh token that
-- was spent to get it (ARGV[2]; with nothing stored, it is written), so a pair is never replaced by one made
-- from an older refresh token. Then free the refresh lock if this process still holds it.
-- KEYS[1] the user's pair, KEYS[2] its lock; ARGV: owner, spent refresh token, new pair (JSON), keep (ms).
-- Reply: 1 written, 0 refused (the stored pair, which is newer, stays).
local stored = redis.call('GET', KEYS[1])
local written = 0
if not stored or cjson.decode(stored).r == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  written = 1
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return written
