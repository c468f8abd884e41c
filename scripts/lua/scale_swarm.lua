-- scale_swarm: set a swarm's member targets; each hosting worker reconciles to them.
-- KEYS[1] - swarms hash ({ns}:swarms)
-- ARGV[1] - swarm id
-- ARGV[2] - Python agents wanted (per hosting worker)
-- ARGV[3] - external members wanted (per hosting worker)
-- returns 1; errors NOT_FOUND, ILLEGAL_TRANSITION (a finished swarm)
local swarm = hget_json(KEYS[1], ARGV[1])
if not swarm then return fail('NOT_FOUND', 'swarm ' .. ARGV[1]) end
if swarm.status == 'completed' or swarm.status == 'failed' then
  return fail('ILLEGAL_TRANSITION', ARGV[1] .. ' is ' .. swarm.status)
end
swarm.max_agents = tonumber(ARGV[2])
swarm.external = tonumber(ARGV[3])
swarm.capacity = math.max(swarm.capacity or 0, 2 * swarm.max_agents)
hset_json(KEYS[1], ARGV[1], swarm)
swarm_index_sync(KEYS[1], swarm)
return 1
