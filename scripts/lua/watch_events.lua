-- watch_events: a listener of task events says it is listening (lib/02_tasks.lua task_event
-- publishes them only while this key exists).
-- KEYS[1] - events watch key ({ns}:events:watch)
-- ARGV[1] - how long the notice lasts, in ms (the listener renews it every third of that)
-- returns 1
redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[1]))
return 1
