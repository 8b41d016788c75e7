-- ended: record how lines ended and take them off the stream, or hand them back.
-- KEYS: stream, records, counts. ARGV[1]: {group, consumer, items: [{id, k, kind, steps: [{k, s, a, r}]}]}.
-- `kind` is done, failed, not_done or unknown; absent, the line goes back to the queue at once (its
-- worker is stopping), for another worker to claim. Reply: 1.
local A = cjson.decode(ARGV[1])
for _, item in ipairs(A.items) do
  for _, step in ipairs(item.steps) do
    local raw = redis.call('HGET', KEYS[2], step.k)
    local rec = raw and cjson.decode(raw) or {}
    rec.s, rec.a, rec.r = step.s, (rec.a or 0) + step.a, step.r
    redis.call('HSET', KEYS[2], step.k, cjson.encode(rec))
  end
  if item.kind then
    local raw = redis.call('HGET', KEYS[2], item.k)
    local rec = raw and cjson.decode(raw) or {}
    if rec.e then redis.call('HINCRBY', KEYS[3], rec.e, -1) end
    rec.e = item.kind
    redis.call('HSET', KEYS[2], item.k, cjson.encode(rec))
    redis.call('HINCRBY', KEYS[3], item.kind, 1)
    redis.call('XACK', KEYS[1], A.group, item.id)
    redis.call('XDEL', KEYS[1], item.id)
  else
    redis.call('XCLAIM', KEYS[1], A.group, A.consumer, 0, item.id, 'IDLE', item.idle, 'JUSTID')
  end
end
return 1
