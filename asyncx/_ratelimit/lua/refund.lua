-- refund: give back `n` grants that were never used. Reply: {now}.
local x, now = clock()
for i, key in ipairs(KEYS) do
  local w = load(key, A.windows[i], x)
  w.f, w.u = math.max(0, w.f - A.n), math.max(0, w.u - A.n)
  save(key, w, x)
  if w.r == nil and w.l ~= UNLIMITED then redis.call('PUBLISH', A.channel, key) end
end
return cjson.encode({now = stamp(now)})
