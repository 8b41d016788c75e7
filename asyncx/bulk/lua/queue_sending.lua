-- sending: record, before they go out, the steps about to be sent (so a line claimed after its worker
-- died is sent again as a call whose earlier attempt may have landed).
-- KEYS: records. ARGV[1]: {steps: [{k, d}], now}. Reply: 1.
local A = cjson.decode(ARGV[1])
for _, step in ipairs(A.steps) do
  local raw = redis.call('HGET', KEYS[1], step.k)
  local rec = raw and cjson.decode(raw) or {}
  rec.d, rec.s = step.d, 'sending'
  if rec.f == nil then rec.f = A.now end
  redis.call('HSET', KEYS[1], step.k, cjson.encode(rec))
end
return 1
