-- delete_swarm: forget one swarm now instead of when its archive period ends (archive_swarms.lua).
-- KEYS[1] - index set
-- KEYS[2] - swarms hash
-- KEYS[3..8] - status index sets
-- KEYS[9] - archive zset (id -> finished ms)
-- KEYS[10] - the swarm's queue ({ns}:queue:<id>)
-- ARGV[1] - swarm id
-- Only a finished (completed, failed) or interrupted swarm with nothing queued, assigned or
-- running may go: any other still takes or may take work, a queued task would be left without
-- a swarm to claim it, and the slot a held task frees at its end would be taken off the count
-- of a swarm registered again under the id (which never took it: over capacity).
-- Its state, snapshots and checkpoints are kept (they expire on their own TTLs), so a swarm
-- registered again under the id can still be recovered from them.
-- returns the status it had; errors NOT_FOUND, ILLEGAL_TRANSITION
load_swarm_status_keys(3)
local sid = ARGV[1]
local swarm = hget_json(KEYS[2], sid)
if not swarm then return fail('NOT_FOUND', 'swarm ' .. sid) end
local s = swarm.status
if s ~= 'completed' and s ~= 'failed' and s ~= 'interrupted' then
  return fail('ILLEGAL_TRANSITION',
              sid .. ' is ' .. s .. ': only completed, failed or interrupted swarms are deleted')
end
local queued = redis.call('ZCARD', KEYS[10])
if queued > 0 then
  return fail('ILLEGAL_TRANSITION', sid .. ' still has ' .. queued .. ' queued tasks')
end
swarm_index_keys(KEYS[2])
local held = swarm_active(sid)
if held > 0 then
  return fail('ILLEGAL_TRANSITION', sid .. ' still has ' .. held .. ' tasks assigned or running')
end
if SWARM_STATUS_KEY[s] then redis.call('SREM', SWARM_STATUS_KEY[s], sid) end
redis.call('HDEL', KEYS[2], sid)
swarm_index_drop(KEYS[2], sid)
redis.call('SREM', KEYS[1], sid)
redis.call('ZREM', KEYS[9], sid)
return s
