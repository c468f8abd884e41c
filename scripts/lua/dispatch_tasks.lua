-- dispatch_tasks: the leader assigns a batch of ready tasks to swarms (fenced by epoch).
-- KEYS[1..22] - task keyset (lib/02_tasks.lua)
-- KEYS[23]    - round-robin cursor ({ns}:rr_cursor): id of the swarm chosen last
-- KEYS[24..]  - queue of each swarm named in ARGV[5..], same order
-- ARGV[1] - leader epoch
-- ARGV[2] - strategy: least_loaded | round_robin | priority | capability
-- ARGV[3] - most tasks to assign
-- ARGV[4] - most ready tasks to examine (blocked tasks stay ready with their reason)
-- ARGV[5..] - candidate swarm ids
-- Every strategy considers only active swarms whose capabilities cover the task's and whose
-- active count is below capacity; it then picks: least_loaded fewest active tasks;
-- round_robin next id after the cursor; priority the swarm whose priority is nearest the
-- task's (higher first); capability the best fit (fewest extra capabilities). Ties go to the
-- least loaded, then memory load, then id.
-- returns {assigned, promoted, swarm_id_1, task_id_1, swarm_id_2, task_id_2, ...}
local n = load_task_keys()
local cursor_key = KEYS[n + 1]
local epoch, strategy = ARGV[1], ARGV[2]
local batch, scan = tonumber(ARGV[3]), tonumber(ARGV[4])
local fresh, current = check_epoch(TK.epoch, epoch)
if not fresh then return fail('STALE_EPOCH', 'epoch ' .. epoch .. ' < ' .. current) end
if strategy ~= 'least_loaded' and strategy ~= 'round_robin' and strategy ~= 'priority'
    and strategy ~= 'capability' then
  return fail('BAD_REQUEST', 'unknown strategy ' .. tostring(strategy))
end
local now = now_ms()

local promoted = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', TK.delayed, '-inf', now, 'LIMIT', 0, scan)) do
  redis.call('ZREM', TK.delayed, id)
  local task = get_task(id)
  if task and task.status == 'failed' then
    task.reason = ''
    make_ready(task, now)
    put_task(task, now)
    promoted = promoted + 1
  end
end

local swarms, spare = {}, 0
for i = 5, #ARGV do
  local s = hget_json(TK.swarms, ARGV[i])
  if s and s.status == 'active' and s.hosts ~= '' and not s.paused then
    s._queue = KEYS[n + 1 + (i - 4)]
    s._caps = split(s.caps)
    swarms[#swarms + 1] = s
    spare = spare + math.max(0, s.capacity - s.active)
  end
end
table.sort(swarms, function(a, b) return a.id < b.id end)

local function lighter(a, b)
  if a.active ~= b.active then return a.active < b.active end
  local ma, mb = a.mem_load or 0, b.mem_load or 0
  if ma ~= mb then return ma < mb end
  return a.id < b.id
end

local cursor = redis.call('GET', cursor_key) or ''
local function choose(task, need, eligible)
  if strategy == 'round_robin' then
    for _, s in ipairs(eligible) do
      if s.id > cursor then cursor = s.id return s end
    end
    cursor = eligible[1].id
    return eligible[1]
  end
  local best = eligible[1]
  for k = 2, #eligible do
    local s = eligible[k]
    local better
    if strategy == 'priority' then
      local ds, db = math.abs(s.prio - task.prio), math.abs(best.prio - task.prio)
      if ds ~= db then better = ds < db
      elseif s.prio ~= best.prio then better = s.prio < best.prio
      else better = lighter(s, best) end
    elseif strategy == 'capability' then
      local es, eb = #s._caps - #need, #best._caps - #need
      if es ~= eb then better = es < eb else better = lighter(s, best) end
    else
      better = lighter(s, best)
    end
    if better then best = s end
  end
  return best
end

local out = {0, promoted}
local assigned = 0
-- With no room anywhere only the head of the queue is examined, so its reason stays visible
-- without decoding the whole scan window on every round.
local window = spare > 0 and scan or math.min(scan, 10)
do
  for _, id in ipairs(redis.call('ZRANGE', TK.ready, 0, window - 1)) do
    if assigned >= batch then break end
    local task = get_task(id)
    if not task or task.status ~= 'ready' then
      redis.call('ZREM', TK.ready, id)
    else
      local need = split(task.caps)
      local eligible, capable = {}, false
      for _, s in ipairs(swarms) do
        if covers(s._caps, need) then
          capable = true
          if s.active < s.capacity then eligible[#eligible + 1] = s end
        end
      end
      if #eligible == 0 then
        local why = capable and 'all capable swarms at capacity'
          or ('no active swarm has capabilities [' .. task.caps .. ']')
        if task.reason ~= why then
          task.reason = why
          put_task(task, now)
        end
      else
        local s = choose(task, need, eligible)
        redis.call('ZREM', TK.ready, id)
        set_task_status(task, 'assigned', now)
        task.swarm = s.id
        task.reason = ''
        task.epoch = tonumber(epoch)
        redis.call('ZADD', s._queue, ready_score(task), id)
        put_task(task, now)
        s.active = s.active + 1
        s._dirty = true
        spare = spare - 1
        assigned = assigned + 1
        out[#out + 1] = s.id
        out[#out + 1] = id
      end
    end
  end
end
for _, s in ipairs(swarms) do
  if s._dirty then
    s._dirty, s._queue, s._caps = nil, nil, nil
    hset_json(TK.swarms, s.id, s)
  end
end
if strategy == 'round_robin' and cursor ~= '' then redis.call('SET', cursor_key, cursor) end
out[1] = assigned
return out
