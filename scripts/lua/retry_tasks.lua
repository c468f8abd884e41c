-- retry_tasks: give finished tasks that did not complete (dead, cancelled) a new life: ready
-- again with their attempts reset, as an operator's `tasks retry` asks.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- ARGV[1..N]  - task ids
-- A task whose dependencies are not all completed (a dependent cancelled because one died) is
-- refused: run now, it would read results that do not exist. Its payload must still be there
-- (not pruned). The dead-letter stream keeps its entry: it is history.
-- returns per id 'retried' | 'not_found' | 'status:<status>' (not dead or cancelled) |
--   'dependency:<id>' (a dependency not completed)
load_task_keys()
local now = now_ms()
local out = {}
for i, id in ipairs(ARGV) do
  local task = get_task(id)
  if not task or redis.call('HEXISTS', TK.payload, id) == 0 then
    out[i] = 'not_found'
  elseif task.status ~= 'dead' and task.status ~= 'cancelled' then
    out[i] = 'status:' .. task.status
  else
    local blocked = nil
    for _, dep in ipairs(split(task.deps)) do
      local d = get_task(dep)
      if not d or d.status ~= 'completed' then blocked = dep break end
    end
    if blocked then
      out[i] = 'dependency:' .. blocked
    else
      task.attempts = 0
      task.deps_left = 0
      task.reason = 'retried after ' .. task.status .. ' (' .. (task.reason or '') .. ')'
      make_ready(task, now)
      put_task(task, now)
      redis.call('HINCRBY', TK.stats, 'operator_retries', 1)
      out[i] = 'retried'
    end
  end
end
return out
