-- enqueue: add job lines to the stream, each exactly once.
-- KEYS: stream, records, counts. ARGV[1]: {lines: [{k, d, n, l}], failed, unknown}.
-- A line is added when it is new or changed (its digest differs) and not queued or in flight, or when
-- it ended not done (or failed with `failed`, unknown with `unknown`): a rerun of the same file adds
-- nothing else. Reply: how many were added.
local A = cjson.decode(ARGV[1])
local added = 0
for _, line in ipairs(A.lines) do
  local raw = redis.call('HGET', KEYS[2], line.k)
  local rec = raw and cjson.decode(raw) or nil
  local add = false
  if rec == nil then
    rec, add = {d = line.d}, true
  elseif rec.e == nil then
    add = false  -- queued or in flight: it is worked as it was added
  elseif rec.d ~= line.d then
    redis.call('HINCRBY', KEYS[3], rec.e, -1)
    rec, add = {d = line.d}, true
  elseif rec.e == 'not_done' or (rec.e == 'failed' and A.failed) or (rec.e == 'unknown' and A.unknown) then
    redis.call('HINCRBY', KEYS[3], rec.e, -1)
    rec.e, add = nil, true
    -- What the rerun asked to send again is no longer final for the worker that takes it.
    for _, key in ipairs({line.k, line.k .. ':bookmark', line.k .. ':collection'}) do
      local step = key == line.k and rec or nil
      if step == nil then
        local stored = redis.call('HGET', KEYS[2], key)
        step = stored and cjson.decode(stored) or {}
      end
      if (step.s == 'failed' and A.failed) or (step.s == 'unsettled' and A.unknown) then
        step.s = 'retry'
        if key ~= line.k then redis.call('HSET', KEYS[2], key, cjson.encode(step)) end
      end
    end
  end
  if add then
    rec.n = line.n
    redis.call('HSET', KEYS[2], line.k, cjson.encode(rec))
    redis.call('XADD', KEYS[1], '*', 'k', line.k, 'd', line.d, 'n', line.n, 'l', line.l)
    added = added + 1
  end
end
return added
