-- register_swarm: add a swarm to the registry in status 'initializing'.
-- KEYS[1] - index set ({ns}:index)
-- KEYS[2] - swarms hash ({ns}:swarms, id -> JSON)
-- KEYS[3..8] - status index sets, in lib/03_swarms.lua order
-- ARGV[1] - swarm spec JSON {id, caps (csv), prio, max_agents, capacity, objective}
-- ARGV[2] - most live (non-terminal) swarms allowed (SWARM_MAX_COUNT)
-- returns 'created' | 'exists'; error CAPACITY_EXCEEDED, BAD_REQUEST
load_swarm_status_keys(3)
local ok, spec = pcall(cjson.decode, ARGV[1])
if not ok or type(spec) ~= 'table' or type(spec.id) ~= 'string' then
  return fail('BAD_REQUEST', 'swarm spec is not JSON')
end
if redis.call('HEXISTS', KEYS[2], spec.id) == 1 then return 'exists' end
local live = redis.call('SCARD', KEYS[1]) - redis.call('SCARD', SWARM_STATUS_KEY.completed)
             - redis.call('SCARD', SWARM_STATUS_KEY.failed)
if live >= tonumber(ARGV[2]) then
  return fail('CAPACITY_EXCEEDED', live .. ' live swarms, limit ' .. ARGV[2])
end
local now = now_ms()
local swarm = {id = spec.id, status = 'initializing', caps = spec.caps or '', prio = spec.prio,
               max_agents = spec.max_agents, capacity = spec.capacity, hosts = '',
               objective = spec.objective or '', created_ms = now, status_ms = now,
               recoveries = 0}
redis.call('SADD', KEYS[1], spec.id)
redis.call('SADD', SWARM_STATUS_KEY.initializing, spec.id)
hset_json(KEYS[2], spec.id, swarm)
swarm_index_sync(KEYS[2], swarm)
return 'created'
