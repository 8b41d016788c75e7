-- settle: release one grant and reconcile with X's answer.
-- Arguments beyond the shared ones: held, answered (false: no answer came), status, retry_after
-- (absent if none), channel, and per window an optional reading {limit, remaining, reset}.
-- Reply: {now, back (X's clock, absent if none), parked (1 if a window was parked for Retry-After)}.
local x, now = clock()
local held = A.held
local ok = A.answered and A.status < 300
local ws, resets = {}, {}
for i = 1, #A.windows do
  local w = load(i, x)
  ws[i] = w
  local open = w.r == nil and w.l ~= UNLIMITED
  if not A.answered then
    if i <= held then w.f = math.max(0, w.f - 1) end
  else
    if i <= held then w.f = math.max(0, w.f - 1) elseif w.u == 0 then w.u = 1 end
    local reading = A.windows[i].reading
    if reading then
      w.t = 1
      if reading.limit and reading.limit > 0 then w.l = reading.limit end
      if reading.reset <= x then
        if A.status == 429 and reading.remaining == 0 then
          -- a reset not credible (passed, or dropped): the one known stands; else probe once shortly
          if w.r and w.r > x + LATE_RETRY then w.lo = 0 else w.lo, w.r, w.o = 0, x + LATE_RETRY, 1 end
        end
      else
        if w.r == nil or reading.reset > w.r + 0.5 then w.lo = reading.remaining
        elseif w.lo == nil or reading.remaining < w.lo then w.lo = reading.remaining end
        w.r, w.o = reading.reset, 0
      end
      if A.status == 429 and reading.remaining == 0 and w.r then table.insert(resets, w.r) end
    elseif ok and w.g == 1 then
      w.g, w.l = 0, UNLIMITED
    elseif ok and w.t == 0 then
      w.t = 1
      if w.l == nil then w.l = UNLIMITED end
    elseif ok then
      w.o = 0
    end
  end
  if open then redis.call('PUBLISH', A.channel, A.windows[i].name) end
end
local parked = false
if A.answered and A.status == 429 and A.retry_after then
  for _, w in ipairs(ws) do
    if room(w, x) > 0 and w.l ~= nil and w.l ~= UNLIMITED then
      w.lo, w.r, parked = 0, x + A.retry_after, true
      break
    end
  end
  table.insert(resets, x + A.retry_after)
end
local back = nil
for _, r in ipairs(resets) do
  if r > x and (back == nil or r > back) then back = r end
end
save_all(x)
local out = {now = stamp(now)}
if back then out.back = stamp(back) end
if parked then out.parked = 1 end
return cjson.encode(out)
