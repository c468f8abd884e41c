-- reap_workers: remove workers whose heartbeat expired (or one leaving cleanly), re-queue their
-- running tasks, and mark swarms left without any live host 'interrupted'.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- KEYS[27..32] - swarm status index sets (lib/03_swarms.lua order)
-- KEYS[33]     - workers gone ({ns}:workers:gone): removed workers whose running tasks are not
--                all handled yet, score 1 when the worker left cleanly, 0 when it died
-- ARGV[1] - heartbeat timeout in milliseconds
-- ARGV[2] - worker id to remove now ('' = every worker whose last beat is older than timeout)
-- ARGV[3] - '1' for a clean leave: running tasks go back to ready, attempt not counted;
--           '0' for a death: each running task counts a failed attempt (retry with backoff)
-- ARGV[4] - random seed for the backoff jitter
-- KEYS[34]     - this sweep's clock ({ns}:clock:workers), advanced by the periodic calls
--                (ARGV[2] = ''): the blind-time guard (lib/01_common.lua sweep_clock,
--                decision 114). Two periodic calls more than a third of the timeout apart (the
--                registry calls every sixth) had Redis blind in between; a worker whose timeout
--                ran out inside that window was alive when it began and could not beat: it gets
--                one full timeout from the window's end before it is declared dead.
-- The swarms a removed worker hosted are those its record lists (host_swarms.lua keeps the
-- list); each loses the host. One left without a host is interrupted and its queued (assigned,
-- unclaimed) tasks go back to ready for other swarms (its queue named from the swarms key, as
-- lib/01b_swarm_index.lua does).
-- A call handles at most REAP_BUDGET running tasks of removed workers (found through the
-- running-by-worker index); the rest wait in the gone set for the next call (the registry
-- reaps every few seconds), so a worker that dies holding thousands of tasks never holds Redis
-- in one script. Likewise the queued tasks of the swarms left without hosts: at most
-- REQUEUE_BUDGET per call, the swarms still holding some wait in {ns}:swarms:requeue (named
-- from the swarms key, as the dispatch index is) while they stay interrupted.
-- returns {removed worker ids...}
local n = load_task_keys()
load_swarm_status_keys(n + 1)
local now = now_ms()
local removed
if ARGV[2] ~= '' then
  removed = {}
  if redis.call('HEXISTS', TK.workers, ARGV[2]) == 1 then removed[1] = ARGV[2] end
else
  local timeout = tonumber(ARGV[1])
  local blind_from, blind_to = sweep_clock(KEYS[n + 8], now, math.floor(timeout / 3))
  local beats = redis.call('ZRANGEBYSCORE', TK.heartbeats, '-inf', now - timeout, 'WITHSCORES')
  removed = {}
  for i = 1, #beats, 2 do
    local ends = tonumber(beats[i + 1]) + timeout
    if not (blind_from and ends > blind_from and now < blind_to + timeout) then
      removed[#removed + 1] = beats[i]
    end
  end
end
local gone_key = KEYS[n + 7]
swarm_index_keys(TK.swarms)
if #removed == 0 and redis.call('ZCARD', gone_key) == 0
    and redis.call('ZCARD', SX.requeue) == 0 then
  return {}
end
local REAP_BUDGET, REQUEUE_BUDGET = 100, 100
local gone, hosted = {}, {}
for _, wid in ipairs(removed) do
  gone[wid] = true
  local worker = hget_json(TK.workers, wid)
  for _, sid in ipairs(split(worker and worker.swarms)) do hosted[#hosted + 1] = sid end
  redis.call('HDEL', TK.workers, wid)
  redis.call('ZREM', TK.heartbeats, wid)
  redis.call('HDEL', SX.mem, wid)
end
math.randomseed(tonumber(ARGV[4]) or 0)
for _, wid in ipairs(removed) do
  redis.call('ZADD', gone_key, ARGV[3] == '1' and 1 or 0, wid)
end

-- only the tasks running on the workers that left (the running-by-worker index), not every
-- running task of the deployment, and at most REAP_BUDGET of them in this call
local budget = REAP_BUDGET
local departed = redis.call('ZRANGE', gone_key, 0, -1, 'WITHSCORES')
for i = 1, #departed, 2 do
  if budget <= 0 then break end
  local wid, graceful = departed[i], departed[i + 1] == '1'
  local prefix = wid .. '|'
  local members = {}
  if redis.call('HEXISTS', TK.workers, wid) == 1 then
    -- it registered again: what it ran before it left is no longer told apart from what it
    -- runs now, so those leases expire instead (reap_leases.lua)
    redis.call('ZREM', gone_key, wid)
  else
    members = redis.call('ZRANGEBYLEX', TK.running_by_worker, '[' .. prefix,
                         '[' .. prefix .. '\255', 'LIMIT', 0, budget)
  end
  for _, member in ipairs(members) do
    budget = budget - 1
    local task = get_task(string.sub(member, #prefix + 1))
    if task and task.status == 'running' and task.worker == wid then
      if graceful then
        hand_back(task, now)
      else
        fail_attempt(task, 'worker ' .. wid .. ' died (heartbeat expired)', false,
                     0.5 + 0.5 * math.random(), now)
      end
    else  -- a stale entry (the record was purged or rewritten): nothing runs there
      redis.call('ZREM', TK.running_by_worker, member)
    end
  end
  if budget > 0 then redis.call('ZREM', gone_key, wid) end  -- all of its tasks handled
end

for _, sid in ipairs(hosted) do
  local swarm = hget_json(TK.swarms, sid)
  if swarm then
    local hosts, changed = {}, false
    for _, h in ipairs(split(swarm.hosts)) do
      if gone[h] then changed = true else hosts[#hosts + 1] = h end
    end
    if changed then
      swarm.hosts = join(hosts)
      local orphaned = #hosts == 0 and (swarm.status == 'active' or swarm.status == 'recovering'
                                        or swarm.status == 'initializing')
      if orphaned then transition_swarm(swarm, 'interrupted', now) end
      hset_json(TK.swarms, sid, swarm)
      swarm_index_sync(TK.swarms, swarm)
      if orphaned then redis.call('ZADD', SX.requeue, 0, sid) end
    end
  end
end

-- the queued (assigned, unclaimed) tasks of swarms left without hosts go back to ready, at
-- most REQUEUE_BUDGET per call; a swarm hosted again meanwhile keeps its queue
local requeue_left = REQUEUE_BUDGET
for _, sid in ipairs(redis.call('ZRANGE', SX.requeue, 0, -1)) do
  if requeue_left <= 0 then break end
  local swarm = hget_json(TK.swarms, sid)
  local more = false
  if swarm and swarm.status == 'interrupted' then
    local _, handled
    _, more, handled = requeue_swarm_queue(sid, swarm_queue_key(TK.swarms, sid), 'swarm '
                                           .. sid .. ' interrupted', now, requeue_left)
    requeue_left = requeue_left - math.max(handled, 1)
  end
  if not more then redis.call('ZREM', SX.requeue, sid) end
end
return removed
