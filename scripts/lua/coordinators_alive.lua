-- coordinators_alive: a coordinator says it is alive (or leaving) and learns how many are,
-- so each takes at most ceil(P / alive) of the partitions' leader leases (decision 44).
-- KEYS[1] - zset of coordinator ids, scored by the Unix ms their membership expires
-- ARGV[1] - coordinator id, ARGV[2] - membership TTL in ms, ARGV[3] - '1' alive, '0' leaving
-- returns the number of live coordinators
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('ZCARD', KEYS[1])
