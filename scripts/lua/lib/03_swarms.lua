-- multiswarm Lua prelude, part 3: the swarm registry state machine.
-- Swarm records live in the swarms hash (id -> JSON); each status has an index set
-- ({ns}:status:<status>) and every registered swarm is in {ns}:index.
-- Statuses, in the order their index keys are passed (multiswarm/keys.py SWARM_STATUSES):
--   initializing active recovering interrupted completed failed

local SWARM_STATUS_ORDER = {'initializing', 'active', 'recovering', 'interrupted', 'completed',
                            'failed'}
local SWARM_TRANSITIONS = {
  initializing = {active = true, failed = true, interrupted = true},
  active = {completed = true, failed = true, interrupted = true},
  interrupted = {recovering = true, failed = true},
  recovering = {active = true, failed = true, interrupted = true},
  completed = {},
  failed = {},
}
local SWARM_STATUS_KEY = {}

-- first: index of the first of the six status-index keys in KEYS
local function load_swarm_status_keys(first)
  for i, s in ipairs(SWARM_STATUS_ORDER) do SWARM_STATUS_KEY[s] = KEYS[first + i - 1] end
end

-- Moves `swarm` (a decoded record) to `status`; returns nil or an error reply.
-- The same status again is a no-op so that retried calls are harmless.
local function transition_swarm(swarm, status, now)
  if swarm.status == status then return nil end
  local allowed = SWARM_TRANSITIONS[swarm.status]
  if not SWARM_STATUS_KEY[status] then
    return fail('ILLEGAL_TRANSITION', 'unknown status ' .. tostring(status))
  end
  if not allowed or not allowed[status] then
    return fail('ILLEGAL_TRANSITION', swarm.id .. ' ' .. swarm.status .. ' -> ' .. status)
  end
  redis.call('SREM', SWARM_STATUS_KEY[swarm.status], swarm.id)
  redis.call('SADD', SWARM_STATUS_KEY[status], swarm.id)
  swarm.status = status
  swarm.status_ms = now
  return nil
end

-- true when a host of the swarm beat within timeout_ms (timeout_ms <= 0: any listed host counts;
-- reap_workers.lua removes the hosts it declares dead). Used where no registry may run.
local function has_live_host(swarm, heartbeats_key, now, timeout_ms)
  for _, h in ipairs(split(swarm.hosts)) do
    if timeout_ms <= 0 then return true end
    local beat = tonumber(redis.call('ZSCORE', heartbeats_key, h) or '')
    if beat and beat >= now - timeout_ms then return true end
  end
  return false
end

-- A swarm that will claim nothing more (finished, or left without a host): its queued tasks go
-- back to ready for other swarms and the queue key is deleted. Needs the task keyset loaded
-- (lib/02_tasks.lua).
-- Returns how many tasks went back to ready.
-- `limit` (default: all) bounds the queue entries handled; returns the number requeued,
-- whether the queue still holds some, and the entries handled.
local function requeue_swarm_queue(sid, queue, reason, now, limit)
  local n = 0
  local ids = redis.call('ZRANGE', queue, 0, (limit or 0) - 1)
  for _, id in ipairs(ids) do
    local task = get_task(id)
    if task and task.status == 'assigned' and task.swarm == sid then
      requeue_assigned(task, reason, now)
      n = n + 1
    end
  end
  if limit == nil or #ids < limit then
    redis.call('DEL', queue)
    return n, false, #ids
  end
  redis.call('ZREM', queue, unpack(ids))
  return n, redis.call('EXISTS', queue) == 1, #ids
end

-- What claim_tasks.lua needs of a swarm record, memoized by the record's text (decision 67):
-- whether it takes work (active, unpaused) and its hosts as a set. A claim reads the record's
-- text each call; only the decode and split of an unchanged record are skipped.
local CLAIM_MEMO = memo_new()
local function claim_view(raw)
  local swarm = json_table(raw)
  if not swarm then return false end
  local hosts = {}
  for _, h in ipairs(split(swarm.hosts)) do hosts[h] = true end
  return {open = swarm.status == 'active' and not swarm.paused, hosts = hosts}
end

-- true when worker `wid` may claim from swarm `sid` (active, unpaused, `wid` among its hosts)
local function swarm_claimable(swarms_key, sid, wid)
  local raw = redis.call('HGET', swarms_key, sid)
  if not raw then return false end
  local view = memo_get(CLAIM_MEMO, raw, claim_view)
  return view and view.open and view.hosts[wid] == true or false
end
