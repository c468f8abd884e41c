-- complete_task: record a task's result exactly once and release its dependents.
-- KEYS[1..22] - task keyset (lib/02_tasks.lua)
-- ARGV[1] - task id
-- ARGV[2] - token of the attempt that produced the result
-- ARGV[3] - worker id
-- ARGV[4] - result bytes
-- The first result of any attempt wins (at-least-once execution, exactly-once record), even
-- when its lease had expired and another attempt is queued or running.
-- returns 'completed' | 'duplicate' (already completed: nothing written) |
--         'ended:<status>' (dead or cancelled before this result arrived: result dropped)
load_task_keys()
local id, token, wid = ARGV[1], ARGV[2], ARGV[3]
local task = get_task(id)
if not task then return fail('NOT_FOUND', 'task ' .. id) end
if task.status == 'completed' then
  redis.call('HINCRBY', TK.stats, 'duplicate_results', 1)
  return 'duplicate'
end
if TERMINAL[task.status] then return 'ended:' .. task.status end
if task.status == 'pending' then
  return fail('ILLEGAL_TRANSITION', 'task ' .. id .. ' pending -> completed')
end
local now = now_ms()
release_swarm_slot(task)
unqueue(task)
redis.call('HSET', TK.result, id, ARGV[4])
task.reason, task.error, task.lease_until = '', '', 0
task.completed_by, task.finished_ms = token, now
set_task_status(task, 'completed', now)
put_task(task, now)
redis.call('HINCRBY', TK.stats, 'completed', 1)
redis.call('XADD', TK.completions, 'MAXLEN', '~', COMPLETIONS_MAXLEN, '*', 'task', id,
           'token', token, 'worker', wid)
release_dependents(id, now)
return 'completed'
