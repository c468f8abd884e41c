-- claim_tasks: a worker takes up to N tasks from one swarm's queue and leases them.
-- KEYS[1..22] - task keyset (lib/02_tasks.lua)
-- KEYS[23]    - the swarm's queue ({ns}:queue:<swarm>)
-- ARGV[1] - swarm id
-- ARGV[2] - worker id (must be registered; error WORKER_UNKNOWN tells it to register again)
-- ARGV[3] - most tasks to claim
-- Queue entries whose task moved on (cancelled, completed, requeued) are dropped here.
-- returns a list of {id, token, handler, payload, timeout_ms, lease_ms, attempts, deps}
local n = load_task_keys()
local queue = KEYS[n + 1]
local sid, wid, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('HEXISTS', TK.workers, wid) == 0 then return fail('WORKER_UNKNOWN', wid) end
local swarm = hget_json(TK.swarms, sid)
if not swarm or swarm.status ~= 'active' or swarm.paused
    or not contains(split(swarm.hosts), wid) then
  return {}
end
local now = now_ms()
local out = {}
while #out < want do
  local popped = redis.call('ZPOPMIN', queue)
  if #popped == 0 then break end
  local id = popped[1]
  local task = get_task(id)
  if task and task.status == 'assigned' and task.swarm == sid then
    task.attempts = task.attempts + 1
    task.worker = wid
    task.token = task.attempts .. '@' .. wid
    task.lease_until = now + task.lease_ms
    task.started_ms = now
    set_task_status(task, 'running', now)
    redis.call('ZADD', TK.leases, task.lease_until, id)
    put_task(task, now)
    redis.call('HINCRBY', TK.stats, 'executions', 1)
    out[#out + 1] = {id, task.token, task.handler, redis.call('HGET', TK.payload, id) or '',
                     task.timeout_ms, task.lease_ms, task.attempts, task.deps}
  end
end
return out
