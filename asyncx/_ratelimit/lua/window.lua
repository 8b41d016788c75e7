-- The window rules of asyncx/_ratelimit/_memory.py, shared by every script (prepended to each).
-- ARGV[1] is a JSON object; every script reads `clock` ({mode, arg}), `ttl` and `windows` from it.
-- Each window names its key (`k`, an index into KEYS), its record in that key (`id`) and the name
-- published when others wait on its answer (`name`).
--
-- A key is one string: a budget's windows packed together, so a user's 15-minute and 24-hour windows
-- cost one small key (RECORDS below). Per window: l limit, u used, f in flight, lo lowest remaining X
-- reported, r reset (X's clock), t trusted, g guess, o reopened (probing after a reset); per key: fu,
-- when its in-flight grants stop counting.

local UNLIMITED = -1
local BOUNDLESS = 1073741824
local LATE_RETRY = 1.0
-- Header: fu (whole seconds). Record: id and flags, l (-2: none), u, f, lo (-1: none), r (hundredths
-- of a second, rounded up: 0 is none).
local HEAD, RECORD, RECORD_SIZE = '<I4', '<Bi4i4i2i4I5', 20

local A = cjson.decode(ARGV[1])

local function clock()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  if A.clock.mode == 'c' then return A.clock.arg, now end
  return now + A.clock.arg, now
end

local boxes = {}  -- per KEYS index: {fu, order = {ids}, recs = {id -> window}}

local function box(k)
  local b = boxes[k]
  if b then return b end
  b = {fu = 0, order = {}, recs = {}}
  local raw = redis.call('GET', KEYS[k])
  if raw then
    b.fu = struct.unpack(HEAD, raw)
    local pos = 5
    while pos + RECORD_SIZE - 1 <= #raw do
      local fl, l, u, f, lo, r
      fl, l, u, f, lo, r, pos = struct.unpack(RECORD, raw, pos)
      local id = math.floor(fl / 8)
      local w = {u = u, f = f, t = fl % 2, g = math.floor(fl / 2) % 2, o = math.floor(fl / 4) % 2}
      if l ~= -2 then w.l = l end
      if lo ~= -1 then w.lo = lo end
      if r ~= 0 then w.r = r / 100 end
      b.recs[id] = w
      table.insert(b.order, id)
    end
  end
  boxes[k] = b
  return b
end

local function load(i, x)
  local spec = A.windows[i]
  local b = box(spec.k)
  local w = b.recs[spec.id]
  if not w then
    w = {l = spec.limit, t = spec.trusted, g = spec.guess, u = 0, f = 0, o = 0}
    b.recs[spec.id] = w
    table.insert(b.order, spec.id)
  end
  w.s, w.box = spec.seconds, b
  if w.f > 0 and x > b.fu then w.f = 0 end  -- grants unanswered this long: their process is gone
  return w
end

local function probing(w)
  return w.lo == nil and (w.l == nil or w.t == 0 or w.o == 1)
end

local function room(w, x)
  if w.r and x >= w.r then
    w.u, w.lo, w.r, w.o = w.f, nil, nil, 1
    -- Grants still out now stand in for the reopened window's probe, which everyone waits on: if
    -- their process died, the others go on after `pttl`, not the whole flight TTL.
    if w.f > 0 and A.pttl then w.box.fu = math.min(w.box.fu, x + A.pttl) end
  end
  if w.l == UNLIMITED then return BOUNDLESS end
  if w.lo then return w.lo - w.f end
  if probing(w) then return 1 - w.f end
  return w.l - w.u
end

-- Write back every key the script read: each expires once all its windows have ended.
local function save_all(x)
  for k, b in pairs(boxes) do
    local parts, keep = {struct.pack(HEAD, math.ceil(b.fu))}, 0
    for _, id in ipairs(b.order) do
      local w = b.recs[id]
      local r = 0
      if w.r then r = math.ceil(w.r * 100 - 1e-6) end
      parts[#parts + 1] = struct.pack(RECORD, id * 8 + w.t + 2 * w.g + 4 * w.o, w.l or -2, w.u, w.f, w.lo or -1, r)
      if w.s and w.s > keep then keep = w.s end
      if w.r and w.r - x > keep then keep = w.r - x end
    end
    redis.call('SET', KEYS[k], table.concat(parts), 'PX', math.ceil((keep + 60) * 1000))
  end
end

local function stamp(t)
  return string.format('%.6f', t)
end
