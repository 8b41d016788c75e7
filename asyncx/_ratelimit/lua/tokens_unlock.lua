-- Free a user's refresh lock if ARGV[1] still holds it (a lock that expired may be another's now).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
