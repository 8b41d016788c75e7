-- take: grant up to `n` sends that every window has room for.
-- Reply: {now, granted, wake (X's clock, absent if none), waiting (index of the window whose answer
-- must come first, 0 if none), windows: [{room, limit, reset, probing}]}.
local x, now = clock()
local n = A.n
local ws = {}
local granted = n
for i = 1, #A.windows do
  ws[i] = load(i, x)
  local rm = room(ws[i], x)
  if rm < granted then granted = math.max(rm, 0) end
end
if granted > 0 then
  -- A probe's answer unblocks everyone waiting on its window: if its process dies, the others take
  -- over after `pttl`, not the whole flight TTL.
  local probe = false
  for _, w in ipairs(ws) do
    if w.l ~= UNLIMITED and probing(w) then probe = true end
  end
  for _, w in ipairs(ws) do
    w.u, w.f = w.u + granted, w.f + granted
    w.box.fu = x + ((probe and A.pttl < A.ttl) and A.pttl or A.ttl)
  end
end
local wake, waiting = nil, 0
if granted < n then
  for i, w in ipairs(ws) do
    if room(w, x) <= 0 then
      if w.r == nil then
        if w.f == 0 and w.l ~= nil and w.l ~= UNLIMITED and not probing(w) then w.r = x + w.s else waiting = i end
      end
      if w.r and (wake == nil or w.r > wake) then wake = w.r end
    end
  end
end
local views = {}
save_all(x)
for i, w in ipairs(ws) do
  local v = {room = room(w, x), probing = 0}
  if w.l then v.limit = w.l end
  if w.r then v.reset = stamp(w.r) end
  if w.l ~= UNLIMITED and probing(w) then
    v.probing = 1
    if w.l == nil then v.room = BOUNDLESS else v.room = w.l - w.u end
  end
  views[i] = v
end
local out = {now = stamp(now), granted = granted, waiting = waiting, windows = views}
if wake then out.wake = stamp(wake) end
return cjson.encode(out)
