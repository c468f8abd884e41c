-- release_tasks: a worker shutting down cleanly hands running tasks back, attempt not counted.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- ARGV[1], ARGV[2], ... - pairs of task id and token
-- returns the number of tasks made ready again
load_task_keys()
local now = now_ms()
local released = 0
for i = 1, #ARGV, 2 do
  local task = get_task(ARGV[i])
  if task and task.status == 'running' and task.token == ARGV[i + 1] then
    hand_back(task, now)
    released = released + 1
  end
end
return released
