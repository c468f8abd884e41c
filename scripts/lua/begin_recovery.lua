-- begin_recovery: first step of applying a recovery plan (global slot): move the swarm
-- interrupted -> recovering and re-queue its in-flight tasks, exactly once per plan.
-- KEYS[1..26]  - task keyset (lib/02_tasks.lua)
-- KEYS[27..32] - swarm status index sets (lib/03_swarms.lua order)
-- KEYS[33]     - the swarm's queue ({ns}:queue:<swarm>)
-- KEYS[34]     - recoveries hash ({ns}:recoveries, swarm id -> JSON of its latest plan:
--                {plan, swarm, state recovering|applied|superseded, requeued (csv), ...})
-- ARGV[1] - plan id ('<swarm>@<interrupted ms>.<recoveries>': every planner of one
--           interruption makes the same id, so an operator and the state manager cannot both
--           apply it)
-- ARGV[2] - swarm id
-- ARGV[3] - status_ms of the interruption the plan was made for
-- ARGV[4] - plan summary JSON {source, confidence, ...}, kept in the recoveries record
-- ARGV[5..] - ids of tasks the plan found in flight for the swarm (the queue is read here)
-- Re-queued: tasks whose record names this swarm and that are 'assigned', or 'running' on a
-- worker no longer in the workers hash; they go back to ready at once (the attempt stays
-- counted). Every check happens before the first write.
-- returns {'begun', requeued ids...} when this call did it; {'recovering'|'applied'|
--   'superseded', requeued ids...} when this plan was begun before (nothing written but the
--   end of a plan the swarm left: superseded);
--   errors NOT_FOUND, NOT_INTERRUPTED, STALE_PLAN, BAD_REQUEST
local n = load_task_keys()
load_swarm_status_keys(n + 1)
local queue, recoveries = KEYS[n + 7], KEYS[n + 8]
local plan_id, sid = ARGV[1], ARGV[2]

local rec = hget_json(recoveries, sid)
if rec and rec.plan == plan_id then
  if rec.state == 'recovering' then
    -- begun before, and the swarm left this plan's recovery since (hosted again, maybe
    -- interrupted again: a later plan's turn): the plan must not restore its source over what
    -- was written meanwhile, so it ends superseded here
    local swarm = hget_json(TK.swarms, sid)
    if not swarm or swarm.status ~= 'recovering' or swarm.recovery_plan ~= plan_id then
      rec.state, rec.finished_ms = 'superseded', now_ms()
      hset_json(recoveries, sid, rec)
    end
  end
  local out = {rec.state}
  for _, id in ipairs(split(rec.requeued)) do out[#out + 1] = id end
  return out
end
local swarm = hget_json(TK.swarms, sid)
if not swarm then return fail('NOT_FOUND', 'swarm ' .. sid) end
if swarm.status ~= 'interrupted' then
  return fail('NOT_INTERRUPTED', sid .. ' is ' .. tostring(swarm.status))
end
if tonumber(ARGV[3]) ~= tonumber(swarm.status_ms) then
  return fail('STALE_PLAN', 'plan ' .. plan_id .. ' is for an earlier interruption of ' .. sid)
end
local ok, summary = pcall(cjson.decode, ARGV[4])
if not ok or type(summary) ~= 'table' then return fail('BAD_REQUEST', 'plan summary is not JSON') end

local now = now_ms()
local requeued, seen = {}, {}
local function requeue(id)
  if seen[id] then return end
  seen[id] = true
  local task = get_task(id)
  if not task or task.swarm ~= sid then return end
  local orphan = task.status == 'assigned'
    or (task.status == 'running' and redis.call('HEXISTS', TK.workers, task.worker) == 0)
  if not orphan then return end
  release_swarm_slot(task)
  unqueue(task)
  task.reason = 'requeued by recovery ' .. plan_id
  make_ready(task, now)
  put_task(task, now)
  requeued[#requeued + 1] = id
end
for i = 5, #ARGV do requeue(ARGV[i]) end
for _, id in ipairs(redis.call('ZRANGE', queue, 0, -1)) do requeue(id) end
redis.call('DEL', queue)

local err = transition_swarm(swarm, 'recovering', now)
if err then return err end
swarm.recovery_plan = plan_id
hset_json(TK.swarms, sid, swarm)
swarm_index_sync(TK.swarms, swarm)
summary.plan, summary.swarm, summary.state = plan_id, sid, 'recovering'
summary.requeued, summary.began_ms = join(requeued), now
hset_json(recoveries, sid, summary)
if #requeued > 0 then redis.call('HINCRBY', TK.stats, 'recovered_tasks', #requeued) end
local out = {'begun'}
for _, id in ipairs(requeued) do out[#out + 1] = id end
return out
