-- host_swarms: register a worker and make it a host of its swarms, in one step.
-- KEYS[1] - index set
-- KEYS[2] - swarms hash
-- KEYS[3..8] - status index sets
-- KEYS[9] - workers hash ({ns}:workers, id -> JSON)
-- KEYS[10] - heartbeats zset ({ns}:heartbeats, worker id -> last beat ms)
-- ARGV[1] - worker id
-- ARGV[2] - worker info JSON {host, pid, ...}
-- ARGV[3] - most live swarms allowed (SWARM_MAX_COUNT)
-- ARGV[4..] - swarm spec JSON {id, caps, prio, max_agents, capacity, objective, external}
-- New swarms go initializing -> active; an interrupted swarm goes interrupted -> recovering ->
-- active (its recoveries counted). A finished swarm cannot be hosted (ILLEGAL_TRANSITION).
-- Everything is checked before anything is written.
-- returns {swarm id, status before ('new' if created), ...}
load_swarm_status_keys(3)
local wid = ARGV[1]
local ok, info = pcall(cjson.decode, ARGV[2])
if not ok or type(info) ~= 'table' then return fail('BAD_REQUEST', 'worker info is not JSON') end
local entries, created = {}, 0
for i = 4, #ARGV do
  local good, spec = pcall(cjson.decode, ARGV[i])
  if not good or type(spec) ~= 'table' or type(spec.id) ~= 'string' then
    return fail('BAD_REQUEST', 'swarm spec #' .. (i - 3) .. ' is not JSON')
  end
  local swarm = hget_json(KEYS[2], spec.id)
  if swarm and (swarm.status == 'completed' or swarm.status == 'failed') then
    return fail('ILLEGAL_TRANSITION', spec.id .. ' is ' .. swarm.status .. ' and cannot be hosted')
  end
  if not swarm then created = created + 1 end
  entries[#entries + 1] = {spec = spec, swarm = swarm}
end
local live = redis.call('SCARD', KEYS[1]) - redis.call('SCARD', SWARM_STATUS_KEY.completed)
             - redis.call('SCARD', SWARM_STATUS_KEY.failed)
if created > 0 and live + created > tonumber(ARGV[3]) then
  return fail('CAPACITY_EXCEEDED', (live + created) .. ' live swarms, limit ' .. ARGV[3])
end

local now = now_ms()
local ids, out = {}, {}
for _, e in ipairs(entries) do
  local spec, swarm = e.spec, e.swarm
  local before = swarm and swarm.status or 'new'
  if not swarm then
    swarm = {id = spec.id, status = 'initializing', active = 0, hosts = '', created_ms = now,
             status_ms = now, mem_load = 0, recoveries = 0}
    redis.call('SADD', KEYS[1], spec.id)
    redis.call('SADD', SWARM_STATUS_KEY.initializing, spec.id)
  end
  swarm.caps, swarm.prio, swarm.capacity = spec.caps or '', spec.prio, spec.capacity
  swarm.max_agents, swarm.objective = spec.max_agents, spec.objective or ''
  swarm.external = spec.external or 0
  local hosts = split(swarm.hosts)
  if not contains(hosts, wid) then hosts[#hosts + 1] = wid end
  swarm.hosts = join(hosts)
  if swarm.status == 'interrupted' then
    transition_swarm(swarm, 'recovering', now)
    swarm.recoveries = (swarm.recoveries or 0) + 1
  end
  transition_swarm(swarm, 'active', now)
  hset_json(KEYS[2], swarm.id, swarm)
  ids[#ids + 1] = swarm.id
  out[#out + 1] = swarm.id
  out[#out + 1] = before
end
info.id, info.swarms, info.registered_ms = wid, join(ids), now
hset_json(KEYS[9], wid, info)
redis.call('ZADD', KEYS[10], now, wid)
return out
