-- extend_leases: a worker renews the leases (visibility timeouts) of tasks it is running.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- ARGV[1] - worker id
-- ARGV[2], ARGV[3], ... - pairs of task id and token
-- Each lease is renewed by the task's own lease_ms (its record): one call renews tasks of
-- different lease lengths, and none is given a shorter lease than it asked for.
-- returns the ids whose lease this worker no longer holds (completed elsewhere, cancelled,
--   requeued after expiry): the worker should stop caring about their outcome
load_task_keys()
local now = now_ms()
local lost = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local task = get_task(id)
  if task and task.status == 'running' and task.token == token then
    task.lease_until = now + tonumber(task.lease_ms)
    task.blind = nil  -- (a lease its worker set: reap_leases.lua may extend it once again)
    redis.call('ZADD', TK.leases, deadline_text(task.lease_until), id)
    put_task(task, now)
  else
    lost[#lost + 1] = id
  end
end
return lost
