-- take: lines for one worker: first those idle past `claim` ms (their worker died), then new ones.
-- KEYS: stream, records, enqueuing flag. ARGV[1]: {group, consumer, count, claim (-1: none), cursor}.
-- Reply: {entries: [{id, k, d, n, l, claimed, recs: [line, bookmark step, collection step]}],
-- left (lines in the stream: queued or in flight), enqueuing (1 while lines are being added),
-- cursor (where the next claim scan starts; 0-0 once it went round)}.
local A = cjson.decode(ARGV[1])
local out = {}
local function take(entry, claimed)
  local e = {id = entry[1], claimed = claimed}
  local f = entry[2]
  for i = 1, #f, 2 do e[f[i]] = f[i + 1] end
  local recs = redis.call('HMGET', KEYS[2], e.k, e.k .. ':bookmark', e.k .. ':collection')
  e.recs = {recs[1] or '', recs[2] or '', recs[3] or ''}
  table.insert(out, e)
end
local cursor = A.cursor
if A.claim >= 0 then
  -- Scanned from where the last claim stopped: live workers' lines early in the pending list must
  -- not hide a dead one's further on.
  local claimed = redis.call('XAUTOCLAIM', KEYS[1], A.group, A.consumer, A.claim, A.cursor, 'COUNT', A.count)
  cursor = claimed[1]
  for _, entry in ipairs(claimed[2]) do
    if entry[2] then take(entry, true) end
  end
end
if #out < A.count then
  local read = redis.call('XREADGROUP', 'GROUP', A.group, A.consumer, 'COUNT', A.count - #out, 'STREAMS', KEYS[1], '>')
  if read then
    for _, entry in ipairs(read[1][2]) do take(entry, false) end
  end
end
local reply = {left = redis.call('XLEN', KEYS[1]), enqueuing = redis.call('EXISTS', KEYS[3]), cursor = cursor}
if #out > 0 then reply.entries = out end
return cjson.encode(reply)
