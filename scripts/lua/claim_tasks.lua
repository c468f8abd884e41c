-- claim_tasks: a worker takes up to N tasks from one swarm's queue and leases them.
-- KEYS[1..8]  - the task keys it uses: tasks payload leases stats swarms workers events-watch
--               running-by-worker (lib/02_tasks.lua load_claim_keys)
-- KEYS[9]     - the swarm's queue ({ns}:queue:<swarm>)
-- ARGV[1] - swarm id
-- ARGV[2] - worker id (must be registered; error WORKER_UNKNOWN tells it to register again)
-- ARGV[3] - most tasks to claim
-- KEYS[10]    - request key (scripts.py): a retry replays this call's claims, never takes more
-- prefetch: KEYS[7]
--   (the events watch, read with the request key: lib/01_common.lua read_string)
-- A call that claims nothing records nothing (REQUEST.none, decision 83): it wrote nothing but
-- the drop of queue entries whose task moved on, which a second run would not find again.
-- Queue entries whose task moved on (cancelled, completed, requeued) are dropped here.
-- returns a list of {id, token, handler, payload, timeout_ms, lease_ms, attempts, {deps...}}
local n = load_claim_keys()
local queue = KEYS[n + 1]
local sid, wid, want = ARGV[1], ARGV[2], tonumber(ARGV[3])

-- a task's dependencies as the reply lists them; one shared empty list for the many without
-- (only read, by the reply's conversion: a table less per task, decision 75)
local NO_DEPS = {}
local function deps_of(task)
  local deps = task.deps
  if deps == '' then return NO_DEPS end
  return split(deps)
end

local function row(task)
  return {task.id, task.token, task.handler, redis.call('HGET', TK.payload, task.id) or '',
          task.timeout_ms, task.lease_ms, task.attempts, deps_of(task)}
end

if REPLAY then
  -- A retry of a call that ran: hand over what it claimed and this attempt still holds (a
  -- lease that expired meanwhile was reaped and is no longer ours). Payloads are read again,
  -- so the record keeps only ids and fencing tokens.
  local out = {}
  for _, claimed in ipairs(REPLAY) do
    local task = get_task(claimed[1])
    if task and task.status == 'running' and task.token == claimed[2] then
      out[#out + 1] = row(task)
    end
  end
  return out
end
if redis.call('HEXISTS', TK.workers, wid) == 0 then return fail('WORKER_UNKNOWN', wid) end
if not swarm_claimable(TK.swarms, sid, wid) then  -- lib/03_swarms.lua
  REQUEST.none = true
  return {}
end
local now = now_ms()
local out, record = {}, {}
-- Records read in one HMGET per pop; records, leases and running-by-worker entries written in
-- one command per key, payloads read in one HMGET (decision 71: 6 commands a task -> 6 a call).
-- ZPOPMIN hands out each id once, so no task is read or written twice in a call.
local hset_args, lease_args, rbw_args, claimed_ids = {}, {}, {}, {}
while want and #out < want do
  local popped = redis.call('ZPOPMIN', queue, want - #out)
  if #popped == 0 then break end
  local ids = {}
  for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
  local raws = hmget_list(TK.tasks, ids)
  for k, id in ipairs(ids) do
    local task = raws[k] and decode_task(raws[k])
    if task and task.status == 'assigned' and task.swarm == sid then
      task.attempts = task.attempts + 1
      -- (pack_sparse below: no field set to its default; a worker id is never '')
      task.worker = wid ~= '' and wid or nil
      -- the fencing token names this claim alone: `claims` never goes down (attempts does,
      -- at a hand-back or an operator's retry), so an earlier claim's outcome still in flight
      -- is stale against a later claim by the same worker (decision 121); a record from
      -- before it counts from its attempts
      task.claims = math.max(task.claims or 0, task.attempts - 1) + 1
      task.token = string.format('%d@%s', task.claims, wid)
      task.lease_until = now + task.lease_ms
      task.blind = nil  -- (reap_leases.lua's mark of a lease it extended: decision 114)
      task.started_ms = now
      -- a new run reports its own progress (record_progress.lua)
      task.progress, task.progress_note, task.progress_ms = nil, nil, nil
      task.assigned_ms = nil  -- read only while assigned (reap_leases.lua): one number less
      -- set_task_status(task, 'running') without its ZADD: assigned and running have no
      -- status index, and the running-by-worker entries go in one ZADD below
      task.status = 'running'
      task_event(task, 'assigned', now)
      local n = #lease_args
      lease_args[n + 1], lease_args[n + 2] = deadline_text(task.lease_until), id
      rbw_args[n + 1], rbw_args[n + 2] = '0', wid .. '|' .. id
      hset_args[n + 1], hset_args[n + 2] = id, pack_sparse(task, now)
      out[#out + 1] = {task.id, task.token, task.handler, '', task.timeout_ms, task.lease_ms,
                       task.attempts, deps_of(task)}
      record[#record + 1] = {id, task.token}
      claimed_ids[#claimed_ids + 1] = id
    end
  end
end
if #out > 0 then
  call_chunked('HSET', TK.tasks, hset_args)
  call_chunked('ZADD', TK.leases, lease_args)
  call_chunked('ZADD', TK.running_by_worker, rbw_args)
  local payloads = hmget_list(TK.payload, claimed_ids)
  for i, r in ipairs(out) do r[4] = payloads[i] or '' end
  redis.call('HINCRBY', TK.stats, 'executions', #out)
end
if #out == 0 then REQUEST.none = true
else REQUEST.record = record end
return out
