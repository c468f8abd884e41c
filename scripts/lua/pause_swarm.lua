-- pause_swarm: pause or resume one swarm. While paused the leader assigns it nothing and its
-- workers claim nothing; tasks already running finish, queued ones wait in its queue.
-- KEYS[1] - swarms hash ({ns}:swarms)
-- ARGV[1] - swarm id
-- ARGV[2] - '1' to pause, '0' to resume
-- returns 1 when the flag changed, 0 when it already had that value;
--   errors NOT_FOUND, ILLEGAL_TRANSITION (a finished swarm)
local swarm = hget_json(KEYS[1], ARGV[1])
if not swarm then return fail('NOT_FOUND', 'swarm ' .. ARGV[1]) end
if swarm.status == 'completed' or swarm.status == 'failed' then
  return fail('ILLEGAL_TRANSITION', ARGV[1] .. ' is ' .. swarm.status)
end
local paused = ARGV[2] == '1'
if (swarm.paused or false) == paused then return 0 end
swarm.paused = paused
swarm.paused_ms = paused and now_ms() or 0
hset_json(KEYS[1], ARGV[1], swarm)
swarm_index_sync(KEYS[1], swarm)
return 1
