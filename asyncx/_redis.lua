-- asyncx's rate-limit store in Redis: the rules of asyncx/_store.py's MemoryStore, made atomic.
-- One file, two scripts: the Python side appends the body of TAKE or SETTLE to the shared part.
-- Windows are hashes: l limit, s seconds, t trusted, g guess, u used, f in flight,
-- fu in flight until, lo lowest remaining X reported, r reset (X's clock), tc last grant.

local NIL = -2
local FLIGHT_TTL = 120

local function clock(mode, arg)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  if mode == 'c' then return tonumber(arg), now end
  return now + tonumber(arg), now
end

local function num(v)
  if v then return tonumber(v) end
  return nil
end

local function load(key, limit, seconds, trusted, guess, x)
  local v = redis.call('HMGET', key, 'l', 's', 't', 'g', 'u', 'f', 'fu', 'lo', 'r', 'tc')
  local w = {}
  if not v[5] then
    if limit ~= NIL then w.l = limit end
    w.s, w.t, w.g, w.u, w.f, w.fu, w.tc = seconds, trusted, guess, 0, 0, 0, x
  else
    w.l, w.s, w.t, w.g = num(v[1]), tonumber(v[2]), tonumber(v[3]), tonumber(v[4])
    w.u, w.f, w.fu = tonumber(v[5]), tonumber(v[6]), tonumber(v[7])
    w.lo, w.r, w.tc = num(v[8]), num(v[9]), tonumber(v[10])
  end
  if w.f > 0 and x > w.fu then w.f = 0 end  -- grants unanswered this long: their process is gone
  return w
end

local function room(w, x)
  if w.r and x >= w.r then w.u, w.lo, w.r = w.f, nil, nil end
  if w.l == -1 then return 1073741824 end
  if w.lo then return w.lo - w.f end
  if w.l == nil or w.t == 0 then return 1 - w.f end
  return w.l - w.u
end

local function save(key, w, x)
  local set = {'s', w.s, 't', w.t, 'g', w.g, 'u', w.u, 'f', w.f, 'fu', w.fu, 'tc', w.tc}
  local gone = {}
  if w.l then table.insert(set, 'l'); table.insert(set, w.l) else table.insert(gone, 'l') end
  if w.lo then table.insert(set, 'lo'); table.insert(set, w.lo) else table.insert(gone, 'lo') end
  if w.r then table.insert(set, 'r'); table.insert(set, string.format('%.6f', w.r)) else table.insert(gone, 'r') end
  redis.call('HSET', key, unpack(set))
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  local keep = w.s
  if w.r and w.r - x > keep then keep = w.r - x end
  redis.call('PEXPIRE', key, math.ceil((keep + 60) * 1000))
end
--- TAKE

-- ARGV[1] is a JSON array: mode, clock argument, n, then (limit, seconds, trusted, guess) per window
local A = cjson.decode(ARGV[1])
local x, now = clock(A[1], A[2])
local n = tonumber(A[3])
local ws = {}
local granted = n
for i, key in ipairs(KEYS) do
  local b = 3 + (i - 1) * 4
  ws[i] = load(key, tonumber(A[b + 1]), tonumber(A[b + 2]), tonumber(A[b + 3]), tonumber(A[b + 4]), x)
  local rm = room(ws[i], x)
  if rm < granted then granted = math.max(rm, 0) end
end
if granted > 0 then
  for _, w in ipairs(ws) do
    w.u, w.f, w.fu, w.tc = w.u + granted, w.f + granted, x + FLIGHT_TTL, x
  end
end
local wake, waiting = nil, 0
if granted < n then
  for i, w in ipairs(ws) do
    if room(w, x) <= 0 then
      if w.r == nil then
        if w.f == 0 and w.l ~= nil and w.l ~= -1 then w.r = x + w.s else waiting = i end
      end
      if w.r and (wake == nil or w.r > wake) then wake = w.r end
    end
  end
end
local out = {string.format('%.6f', now), granted, string.format('%.6f', wake or -1), waiting}
for i, key in ipairs(KEYS) do
  local w = ws[i]
  save(key, w, x)
  table.insert(out, room(w, x))
  table.insert(out, w.l or NIL)
  table.insert(out, string.format('%.6f', w.r or -1))
end
return out
--- SETTLE

-- ARGV[1] is a JSON array: mode, clock argument, kind (a: answer, n: no answer, r: refund), held or refund count, status,
-- retry-after (-1: none), channel, then per window (limit, seconds, trusted, guess, has reading,
-- reading limit, remaining, reset)
local A = cjson.decode(ARGV[1])
local x, now = clock(A[1], A[2])
local kind, held, status, after = A[3], tonumber(A[4]), tonumber(A[5]), tonumber(A[6])
local ok = status < 300
local ws, resets = {}, {}
for i, key in ipairs(KEYS) do
  local b = 7 + (i - 1) * 8
  local w = load(key, tonumber(A[b + 1]), tonumber(A[b + 2]), tonumber(A[b + 3]), tonumber(A[b + 4]), x)
  ws[i] = w
  local open = w.r == nil and w.l ~= -1
  if kind == 'r' then
    w.f, w.u = math.max(0, w.f - held), math.max(0, w.u - held)
  elseif kind == 'n' then
    if i <= held then w.f = math.max(0, w.f - 1) end
  else
    if i <= held then w.f = math.max(0, w.f - 1) elseif w.u == 0 then w.u = 1 end
    if A[b + 5] == 1 then
      local limit, remaining, reset = tonumber(A[b + 6]), tonumber(A[b + 7]), tonumber(A[b + 8])
      w.t = 1
      if limit > 0 then w.l = limit end
      if reset > x then
        if w.r == nil or reset > w.r + 0.5 then w.lo = remaining
        elseif w.lo == nil or remaining < w.lo then w.lo = remaining end
        w.r = reset
      end
      if remaining == 0 and w.r then table.insert(resets, w.r) end
    elseif ok and w.g == 1 then
      w.g, w.l = 0, -1
    elseif ok and w.t == 0 then
      w.t = 1
      if w.l == nil then w.l = -1 end
    end
  end
  if open then redis.call('PUBLISH', A[7], key) end
end
if kind == 'a' and status == 429 and after >= 0 then
  for _, w in ipairs(ws) do
    if room(w, x) > 0 and w.l ~= nil and w.l ~= -1 then
      w.lo, w.r = 0, x + after
      break
    end
  end
  table.insert(resets, x + after)
end
local back = -1
for _, r in ipairs(resets) do
  if r > x and r > back then back = r end
end
for i, key in ipairs(KEYS) do save(key, ws[i], x) end
return {string.format('%.6f', now), string.format('%.6f', back)}
