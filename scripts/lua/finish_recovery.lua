-- finish_recovery: last step of applying a recovery plan (global slot): recovering -> active,
-- or back to interrupted when the swarm has no live host.
-- KEYS[1]    - swarms hash ({ns}:swarms)
-- KEYS[2..7] - swarm status index sets (lib/03_swarms.lua order)
-- KEYS[8]    - recoveries hash ({ns}:recoveries)
-- ARGV[1] - plan id
-- ARGV[2] - swarm id
-- A swarm a worker hosted again meanwhile is already active: the plan still counts as applied.
-- A swarm that moved elsewhere (interrupted again, failed by an operator) ends the plan
-- 'superseded'; a new interruption gets a new plan id.
-- returns 'applied' | 'superseded' (this call finished the plan) | 'already' (finished before);
--   errors STALE_PLAN (the plan was never begun, or another plan replaced it), NOT_FOUND
load_swarm_status_keys(2)
local rec = hget_json(KEYS[8], ARGV[2])
if not rec or rec.plan ~= ARGV[1] then
  return fail('STALE_PLAN', 'plan ' .. ARGV[1] .. ' is not the begun plan of ' .. ARGV[2])
end
if rec.state ~= 'recovering' then return 'already' end
local swarm = hget_json(KEYS[1], ARGV[2])
if not swarm then return fail('NOT_FOUND', 'swarm ' .. ARGV[2]) end
local now = now_ms()
local outcome = 'applied'
if swarm.status == 'recovering' then
  -- never active without a live host: it would take work nobody runs; hosting it again
  -- (host_swarms.lua) starts the next recovery
  local err = transition_swarm(swarm, (swarm.hosts or '') == '' and 'interrupted' or 'active', now)
  if err then return err end
elseif swarm.status ~= 'active' then
  outcome = 'superseded'
end
if outcome == 'applied' then
  swarm.recoveries = (swarm.recoveries or 0) + 1
  hset_json(KEYS[1], ARGV[2], swarm)
  swarm_index_sync(KEYS[1], swarm)
end
rec.state, rec.finished_ms = outcome, now
hset_json(KEYS[8], ARGV[2], rec)
return outcome
