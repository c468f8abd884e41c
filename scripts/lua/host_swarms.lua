-- host_swarms: register a worker as the host of exactly its swarms, in one step.
-- KEYS[1..26]  - task keyset (lib/02_tasks.lua: swarms 11, workers 13, heartbeats 14)
-- KEYS[27]     - index set
-- KEYS[28..33] - status index sets
-- KEYS[34..]   - queue of each swarm named in ARGV[4], same order
-- ARGV[1] - worker id
-- ARGV[2] - worker info JSON {host, pid, ...}
-- ARGV[3] - most live swarms allowed (SWARM_MAX_COUNT)
-- ARGV[4] - csv of the swarms whose queues are passed: those the worker's record lists and
--           the specs do not (the caller reads the record first)
-- ARGV[5..] - swarm spec JSON {id, caps, prio, max_agents, capacity, objective, external,
--             handlers, prefixes}: handlers (csv of registered names, or null: anything) and
--             prefixes (csv) say what the worker can run; the last host to register sets them
-- New swarms go initializing -> active; an interrupted swarm goes interrupted -> recovering ->
-- active (its recoveries counted). A finished swarm (completed, failed) is skipped: not hosted,
-- reported with its status so the worker stops serving it (a worker declared dead can rejoin
-- after one of its swarms ended).
-- Re-registering under the same id drops the worker from the swarms its record lists but the
-- specs do not; one left with no host is interrupted and its queued tasks go back to ready, as
-- reap_workers.lua does (a queue not passed, because the record changed meanwhile, is left to
-- the assignment deadline of reap_leases.lua).
-- Everything is checked before anything is written.
-- returns {swarm id, status before ('new' if created; 'completed' or 'failed' when skipped), ...}
local n = load_task_keys()
load_swarm_status_keys(n + 2)
local index = KEYS[n + 1]
local wid = ARGV[1]
local ok, info = pcall(cjson.decode, ARGV[2])
if not ok or type(info) ~= 'table' then return fail('BAD_REQUEST', 'worker info is not JSON') end
local entries, created, wanted = {}, 0, {}
for i = 5, #ARGV do
  local good, spec = pcall(cjson.decode, ARGV[i])
  if not good or type(spec) ~= 'table' or type(spec.id) ~= 'string' then
    return fail('BAD_REQUEST', 'swarm spec #' .. (i - 4) .. ' is not JSON')
  end
  local swarm = hget_json(TK.swarms, spec.id)
  if not swarm then created = created + 1 end
  wanted[spec.id] = true
  entries[#entries + 1] = {spec = spec, swarm = swarm}
end
local live = redis.call('SCARD', index) - redis.call('SCARD', SWARM_STATUS_KEY.completed)
             - redis.call('SCARD', SWARM_STATUS_KEY.failed)
if created > 0 and live + created > tonumber(ARGV[3]) then
  return fail('CAPACITY_EXCEEDED', (live + created) .. ' live swarms, limit ' .. ARGV[3])
end

local now = now_ms()
local queues = {}
for j, sid in ipairs(split(ARGV[4])) do queues[sid] = KEYS[n + 7 + j] end
local previous = hget_json(TK.workers, wid)
for _, sid in ipairs(split(previous and previous.swarms)) do
  local swarm = not wanted[sid] and hget_json(TK.swarms, sid)
  if swarm and contains(split(swarm.hosts), wid) then
    local hosts = remove_value(split(swarm.hosts), wid)
    swarm.hosts = join(hosts)
    local orphaned = #hosts == 0 and (swarm.status == 'active' or swarm.status == 'recovering'
                                      or swarm.status == 'initializing')
    if orphaned then transition_swarm(swarm, 'interrupted', now) end
    hset_json(TK.swarms, sid, swarm)
    swarm_index_sync(TK.swarms, swarm)
    if orphaned and queues[sid] then
      requeue_swarm_queue(sid, queues[sid], 'swarm ' .. sid .. ' interrupted', now)
    end
  end
end

local ids, out = {}, {}
for _, e in ipairs(entries) do
  local spec, swarm = e.spec, e.swarm
  local before = swarm and swarm.status or 'new'
  if swarm and (swarm.status == 'completed' or swarm.status == 'failed') then
    out[#out + 1] = spec.id
    out[#out + 1] = before
  else
    if not swarm then
      swarm = {id = spec.id, status = 'initializing', hosts = '', created_ms = now,
               status_ms = now, recoveries = 0}
      redis.call('SADD', index, spec.id)
      redis.call('SADD', SWARM_STATUS_KEY.initializing, spec.id)
    end
    swarm.caps, swarm.prio, swarm.capacity = spec.caps or '', spec.prio, spec.capacity
    swarm.max_agents, swarm.objective = spec.max_agents, spec.objective or ''
    swarm.external = spec.external or 0
    -- what the host can run (dispatch_tasks.lua routes by it); absent (JSON null): anything
    if type(spec.handlers) == 'string' then
      swarm.handlers, swarm.prefixes = spec.handlers, spec.prefixes or ''
    else
      swarm.handlers, swarm.prefixes = nil, nil
    end
    local hosts = split(swarm.hosts)
    if not contains(hosts, wid) then hosts[#hosts + 1] = wid end
    swarm.hosts = join(hosts)
    if swarm.status == 'interrupted' then
      transition_swarm(swarm, 'recovering', now)
      swarm.recoveries = (swarm.recoveries or 0) + 1
    end
    transition_swarm(swarm, 'active', now)
    hset_json(TK.swarms, swarm.id, swarm)
    swarm_index_sync(TK.swarms, swarm)
    ids[#ids + 1] = swarm.id
    out[#out + 1] = swarm.id
    out[#out + 1] = before
  end
end
info.id, info.swarms, info.registered_ms = wid, join(ids), now
hset_json(TK.workers, wid, info)
redis.call('ZADD', TK.heartbeats, now, wid)
return out
