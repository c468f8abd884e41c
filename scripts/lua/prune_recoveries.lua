-- prune_recoveries: forget the recovery records of swarms no longer registered (archived and
-- forgotten by archive_swarms.lua), so the recoveries hash stays bounded by the swarm count.
-- KEYS[1] - index set ({ns}:index)
-- KEYS[2] - recoveries hash ({ns}:recoveries)
-- returns the number of records removed
local removed = 0
for _, sid in ipairs(redis.call('HKEYS', KEYS[2])) do
  if redis.call('SISMEMBER', KEYS[1], sid) == 0 then
    redis.call('HDEL', KEYS[2], sid)
    removed = removed + 1
  end
end
return removed
