-- unplace_swarm: forget where a deleted swarm was placed (place_swarms.lua), so submissions
-- stop counting on its capabilities there.
-- KEYS[1] - directory hash, KEYS[2] - counts hash (as place_swarms)
-- ARGV[1] - swarm id
-- returns the partition it was in, or -1 when it was not placed
local placed = redis.call('HGET', KEYS[1], ARGV[1])
if not placed then
  return -1
end
local at, csv = string.match(placed, '^(%d+)|(.*)$')
redis.call('HINCRBY', KEYS[2], at .. '|*', -1)
redis.call('HINCRBY', KEYS[2], at .. '|=' .. csv, -1)
for cap in string.gmatch(csv, '[^,]+') do
  redis.call('HINCRBY', KEYS[2], at .. '|' .. cap, -1)
end
redis.call('HDEL', KEYS[1], ARGV[1])
return tonumber(at)
