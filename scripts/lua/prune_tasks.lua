-- prune_tasks: forget terminal tasks older than the retention period (bounded collections).
-- KEYS[1..22] - task keyset (lib/02_tasks.lua)
-- ARGV[1] - retention in milliseconds
-- ARGV[2] - most tasks to prune per status in this call
-- returns the number of tasks pruned
load_task_keys()
local cutoff = now_ms() - tonumber(ARGV[1])
local pruned = 0
for _, status in ipairs({'completed', 'dead', 'cancelled'}) do
  local key = TASK_STATUS_KEY[status]
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0, ARGV[2])) do
    redis.call('HDEL', TK.tasks, id)
    redis.call('HDEL', TK.payload, id)
    redis.call('HDEL', TK.result, id)
    redis.call('HDEL', TK.dependents, id)
    redis.call('ZREM', key, id)
    pruned = pruned + 1
  end
end
return pruned
