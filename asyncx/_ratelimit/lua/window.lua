-- The window rules of asyncx/_ratelimit/_memory.py, shared by every script (prepended to each).
-- A window is a hash: l limit, s seconds, t trusted, g guess, u used, f in flight, fu in flight until,
-- lo lowest remaining X reported, r reset (X's clock), o reopened (probing after a reset), tc touched.
-- ARGV[1] is a JSON object; every script reads `clock` ({mode, arg}), `ttl` and `windows` from it.

local UNLIMITED = -1
local BOUNDLESS = 1073741824
local LATE_RETRY = 1.0

local A = cjson.decode(ARGV[1])

local function clock()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  if A.clock.mode == 'c' then return A.clock.arg, now end
  return now + A.clock.arg, now
end

local function num(v)
  if v then return tonumber(v) end
  return nil
end

local function load(key, spec, x)
  local v = redis.call('HMGET', key, 'l', 's', 't', 'g', 'u', 'f', 'fu', 'lo', 'r', 'o', 'tc')
  local w = {}
  if not v[5] then
    w.l, w.s, w.t, w.g = spec.limit, spec.seconds, spec.trusted, spec.guess
    w.u, w.f, w.fu, w.o, w.tc = 0, 0, 0, 0, x
  else
    w.l, w.s, w.t, w.g = num(v[1]), tonumber(v[2]), tonumber(v[3]), tonumber(v[4])
    w.u, w.f, w.fu = tonumber(v[5]), tonumber(v[6]), tonumber(v[7])
    w.lo, w.r, w.o, w.tc = num(v[8]), num(v[9]), tonumber(v[10]) or 0, tonumber(v[11])
  end
  if w.f > 0 and x > w.fu then w.f = 0 end  -- grants unanswered this long: their process is gone
  return w
end

local function probing(w)
  return w.lo == nil and (w.l == nil or w.t == 0 or w.o == 1)
end

local function room(w, x)
  if w.r and x >= w.r then w.u, w.lo, w.r, w.o = w.f, nil, nil, 1 end
  if w.l == UNLIMITED then return BOUNDLESS end
  if w.lo then return w.lo - w.f end
  if probing(w) then return 1 - w.f end
  return w.l - w.u
end

local function save(key, w, x)
  local set = {'s', w.s, 't', w.t, 'g', w.g, 'u', w.u, 'f', w.f, 'fu', w.fu, 'o', w.o, 'tc', w.tc}
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

local function stamp(t)
  return string.format('%.6f', t)
end
