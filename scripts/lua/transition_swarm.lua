-- transition_swarm: move a swarm along the registry state machine (lib/03_swarms.lua).
-- KEYS[1] - index set
-- KEYS[2] - swarms hash
-- KEYS[3..8] - status index sets
-- KEYS[9] - archive zset ({ns}:archive, id -> finished ms)
-- ARGV[1] - swarm id
-- ARGV[2] - new status
-- ARGV[3] - expected current status ('' for any)
-- A terminal status (completed, failed) enters the archive; archive_swarms.lua forgets it after
-- the retention period. returns the previous status; errors NOT_FOUND, ILLEGAL_TRANSITION
load_swarm_status_keys(3)
local swarm = hget_json(KEYS[2], ARGV[1])
if not swarm then return fail('NOT_FOUND', 'swarm ' .. ARGV[1]) end
if ARGV[3] ~= '' and swarm.status ~= ARGV[3] then
  return fail('ILLEGAL_TRANSITION', ARGV[1] .. ' is ' .. swarm.status .. ', not ' .. ARGV[3])
end
local before = swarm.status
local now = now_ms()
local err = transition_swarm(swarm, ARGV[2], now)
if err then return err end
hset_json(KEYS[2], swarm.id, swarm)
if swarm.status == 'completed' or swarm.status == 'failed' then
  redis.call('ZADD', KEYS[9], now, swarm.id)
end
return before
