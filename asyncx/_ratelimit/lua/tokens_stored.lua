-- The fleet's OAuth 2.0 pair for a user: the stored one, or ARGV[1] stored if none is.
-- KEYS[1] the user's pair; ARGV[1] a pair (JSON {a, r}); ARGV[2] how long to keep it (ms).
local stored = redis.call('GET', KEYS[1])
if stored then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return stored
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
