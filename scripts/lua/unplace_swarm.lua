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
-- (a count that falls to 0 goes, as in place_swarms.lua)
local function drop(field)
  if redis.call('HINCRBY', KEYS[2], field, -1) <= 0 then redis.call('HDEL', KEYS[2], field) end
end
drop(at .. '|*')
drop(at .. '|=' .. csv)
for cap in string.gmatch(csv, '[^,]+') do drop(at .. '|' .. cap) end
redis.call('HDEL', KEYS[1], ARGV[1])
return tonumber(at)
