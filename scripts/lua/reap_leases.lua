-- reap_leases: the leader fails attempts whose lease (visibility timeout) ran out (fenced).
-- KEYS[1..22] - task keyset (lib/02_tasks.lua)
-- ARGV[1] - leader epoch
-- ARGV[2] - most leases to reap in this call
-- ARGV[3] - random seed for the backoff jitter
-- An expired lease counts as a failed attempt (timeouts count as failures): the task retries
-- after backoff, or is dead-lettered after max_attempts.
-- returns {retried, dead}
load_task_keys()
local fresh, current = check_epoch(TK.epoch, ARGV[1])
if not fresh then return fail('STALE_EPOCH', 'epoch ' .. ARGV[1] .. ' < ' .. current) end
math.randomseed(tonumber(ARGV[3]) or 0)
local now = now_ms()
local retried, dead = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', TK.leases, '-inf', now, 'LIMIT', 0, ARGV[2])) do
  local task = get_task(id)
  redis.call('ZREM', TK.leases, id)
  if task and task.status == 'running' then
    local outcome = fail_attempt(task, 'lease expired (worker ' .. task.worker .. ')', false,
                                 0.5 + 0.5 * math.random(), now)
    if outcome == 'dead' then dead = dead + 1 else retried = retried + 1 end
  end
end
return {retried, dead}
