-- cancel_task: cancel a task in any non-terminal status; its dependents end cancelled too.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- ARGV[1] - task id
-- ARGV[2] - reason
-- returns 'cancelled' | 'ended:<status>' when it had already ended
load_task_keys()
local task = get_task(ARGV[1])
if not task then return fail('NOT_FOUND', 'task ' .. ARGV[1]) end
if TERMINAL[task.status] then return 'ended:' .. task.status end
end_task(task, 'cancelled', ARGV[2], now_ms())
return 'cancelled'
