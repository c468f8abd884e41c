-- transition_swarm: move a swarm along the registry state machine (lib/03_swarms.lua).
-- KEYS[1..26]  - task keyset (lib/02_tasks.lua; the swarms hash is KEYS[11])
-- KEYS[27]     - index set
-- KEYS[28..33] - status index sets
-- KEYS[34]     - archive zset ({ns}:archive, id -> finished ms)
-- KEYS[35]     - the swarm's queue ({ns}:queue:<id>)
-- ARGV[1] - swarm id
-- ARGV[2] - new status
-- ARGV[3] - expected current status ('' for any)
-- A terminal status (completed, failed) enters the archive; archive_swarms.lua forgets it after
-- the retention period. A finished swarm claims nothing more: its queued (assigned, unclaimed)
-- tasks go back to ready for other swarms (attempt not counted) and its queue is deleted, also
-- when the call is repeated; tasks already running finish on their workers.
-- returns the previous status; errors NOT_FOUND, ILLEGAL_TRANSITION
local n = load_task_keys()
load_swarm_status_keys(n + 2)
local sid = ARGV[1]
local swarm = hget_json(TK.swarms, sid)
if not swarm then return fail('NOT_FOUND', 'swarm ' .. sid) end
if ARGV[3] ~= '' and swarm.status ~= ARGV[3] then
  return fail('ILLEGAL_TRANSITION', sid .. ' is ' .. swarm.status .. ', not ' .. ARGV[3])
end
local before = swarm.status
local now = now_ms()
local err = transition_swarm(swarm, ARGV[2], now)
if err then return err end
hset_json(TK.swarms, swarm.id, swarm)
swarm_index_sync(TK.swarms, swarm)
if swarm.status == 'completed' or swarm.status == 'failed' then
  redis.call('ZADD', KEYS[n + 8], now, swarm.id)
  requeue_swarm_queue(sid, KEYS[n + 9], 'swarm ' .. sid .. ' ' .. swarm.status, now)
end
return before
