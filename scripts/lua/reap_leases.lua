-- reap_leases: the leader acts on deadlines that passed in the leases zset (fenced).
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- KEYS[27]    - leader key ({ns}:leader): must name the caller (lib/01_common.lua)
-- ARGV[1] - leader epoch
-- ARGV[2] - holder id
-- ARGV[3] - holder instance (acquire_leadership.lua)
-- ARGV[4] - most deadlines to handle in this call
-- ARGV[5] - random seed for the backoff jitter
-- ARGV[6] - assignment deadline in ms (the extension an assigned task waiting in a healthy
--           swarm gets)
-- ARGV[7] - host heartbeat timeout in ms (0: any listed host counts)
-- ARGV[8] - blind gap in ms: two calls further apart than this (Redis time) had Redis blind
--           in between (stalled, unreachable, restarting, or no leader): see below
-- KEYS[28]    - this sweep's clock ({ns}:clock:leases): '<last call ms>|<blind from>|<blind to>'
-- Blind-time guard (decision 114): a running task's lease that ran out inside a blind window
-- was live when Redis went blind, and its worker could not renew it; it gets one full lease from
-- the window's end (its deadline moves there) instead of a failed attempt. A worker that is
-- alive renews it within a third of that; one that died is reaped one lease later. Once per
-- lease its worker set: the record keeps `blind` until a renewal (extend_leases.lua) or a claim
-- sets the lease again, so sweeps that stay slow (each call a window) do not extend it for ever.
-- A running task whose lease (visibility timeout) ran out: a failed attempt (timeouts count as
-- failures), retried after backoff or dead-lettered after max_attempts.
-- An assigned task whose deadline passed: if its swarm is active with a live host and the task
-- waited less than its own timeout_ms + lease_ms + the deadline (one full run of the task ahead
-- of it; a host that beats but never claims must not hold it forever), or the swarm is paused
-- on purpose, the deadline is extended; otherwise it goes back to ready, attempt not counted
-- (it never ran). This needs no registry process: it covers a swarm whose hosts died unseen.
-- returns {retried, dead, requeued}
local n = load_task_keys()
local fresh, why_not = check_epoch(TK.epoch, ARGV[1], KEYS[n + 1], ARGV[2], ARGV[3])
if not fresh then return fail('STALE_EPOCH', why_not) end
math.randomseed(tonumber(ARGV[5]) or 0)
local assign_ms, beat_ms = tonumber(ARGV[6]) or 30000, tonumber(ARGV[7]) or 0
local now = now_ms()
local blind_from, blind_to = sweep_clock(KEYS[n + 2], now, tonumber(ARGV[8]) or 0)
local retried, dead, requeued = 0, 0, 0
local due = redis.call('ZRANGEBYSCORE', TK.leases, '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[4])
for i = 1, #due, 2 do
  local id, deadline = due[i], tonumber(due[i + 1])
  local task = get_task(id)
  redis.call('ZREM', TK.leases, id)
  if task and task.status == 'running' and blind_from and deadline > blind_from
      and now < blind_to + task.lease_ms and not task.blind then
    task.lease_until = blind_to + task.lease_ms
    task.blind = 1
    redis.call('ZADD', TK.leases, deadline_text(task.lease_until), id)
    put_task(task, now)
  elseif task and task.status == 'running' then
    local outcome = fail_attempt(task, 'lease expired (worker ' .. task.worker .. ')', false,
                                 0.5 + 0.5 * math.random(), now)
    if outcome == 'dead' then dead = dead + 1 else retried = retried + 1 end
  elseif task and task.status == 'assigned' then
    local swarm = task.swarm ~= '' and hget_json(TK.swarms, task.swarm) or nil
    local waited = now - (task.assigned_ms or task.updated_ms or now)
    local why
    if not swarm then
      why = 'swarm ' .. task.swarm .. ' is gone'
    elseif swarm.status ~= 'active' then
      why = 'swarm ' .. task.swarm .. ' is ' .. tostring(swarm.status)
    elseif not has_live_host(swarm, TK.heartbeats, now, beat_ms) then
      why = 'swarm ' .. task.swarm .. ' has no live host'
    elseif not swarm.paused and waited >= task.timeout_ms + task.lease_ms + assign_ms then
      why = 'unclaimed by swarm ' .. task.swarm .. ' for ' .. waited .. ' ms'
    end
    if why then
      requeue_assigned(task, why, now)
      requeued = requeued + 1
    else
      -- dispatch leaves assigned_ms out (it equals updated_ms then); a rewrite keeps it
      task.assigned_ms = task.assigned_ms or task.updated_ms
      task.lease_until = now + assign_ms
      redis.call('ZADD', TK.leases, deadline_text(task.lease_until), id)
      put_task(task, now)
    end
  end
end
return {retried, dead, requeued}
