-- refund: give back `n` grants that were never used. Reply: {now}.
local x, now = clock()
local ws = {}
for i = 1, #A.windows do
  local w = load(i, x)
  w.f, w.u = math.max(0, w.f - A.n), math.max(0, w.u - A.n)
  ws[i] = w
end
save_all(x)
for i, w in ipairs(ws) do
  if w.r == nil and w.l ~= UNLIMITED then redis.call('PUBLISH', A.channel, A.windows[i].name) end
end
return cjson.encode({now = stamp(now)})
