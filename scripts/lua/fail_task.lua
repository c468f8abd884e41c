-- fail_task: record a failed attempt; retry with exponential backoff or dead-letter it.
-- KEYS[1..22] - task keyset (lib/02_tasks.lua)
-- ARGV[1] - task id
-- ARGV[2] - token of the failed attempt
-- ARGV[3] - error text
-- ARGV[4] - '1' when the failure is permanent (no retry: bad handler, undecodable payload)
-- ARGV[5] - random seed for the backoff jitter (delay scaled by a factor in [0.5, 1))
-- returns 'retry' | 'dead' | 'stale' (the attempt no longer holds the task: nothing written)
load_task_keys()
local task = get_task(ARGV[1])
if not task then return fail('NOT_FOUND', 'task ' .. ARGV[1]) end
if task.status ~= 'running' or task.token ~= ARGV[2] then return 'stale' end
math.randomseed(tonumber(ARGV[5]) or 0)
return fail_attempt(task, ARGV[3], ARGV[4] == '1', 0.5 + 0.5 * math.random(), now_ms())
