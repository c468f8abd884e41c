-- dispatch_tasks: the leader assigns a batch of ready tasks to swarms (fenced: epoch and lease).
-- KEYS[1..25]    - task keyset (lib/02_tasks.lua)
-- KEYS[26]       - round-robin cursor ({ns}:rr_cursor): id of the swarm chosen last
-- KEYS[27]       - leader key ({ns}:leader): must name the caller (lib/01_common.lua)
-- KEYS[28]       - parked index ({ns}:tasks:parked, hash parked set -> JSON {reason, sweep})
-- KEYS[29..28+P] - parked zset of each parked set named in ARGV[10..9+P], same order
-- KEYS[29+P..]   - queue of each swarm named in ARGV[10+P..], same order
-- ARGV[1] - leader epoch
-- ARGV[2] - holder id
-- ARGV[3] - holder instance (acquire_leadership.lua)
-- ARGV[4] - strategy: least_loaded | round_robin | priority | capability
-- ARGV[5] - most tasks to assign
-- ARGV[6] - most ready tasks to examine (bounds the work of one call; parking one counts twice)
-- ARGV[7] - assignment deadline in ms: an assigned task sits in the leases zset with this
--           deadline and reap_leases.lua looks at it again when it passes
-- ARGV[8] - host heartbeat timeout in ms: a swarm none of whose hosts beat within it gets
--           nothing (0: any listed host counts)
-- ARGV[9] - P, the number of parked sets whose zsets are passed
-- ARGV[10..9+P] - those sets: a capability set (sorted csv; '' for none), or 'CAPSET|HANDLER'
--                 for tasks of that handler that a swarm covering the set may not run
-- ARGV[10+P..]  - candidate swarm ids
-- Every strategy considers only active, unpaused swarms with a live host whose capabilities
-- cover the task's, that may run its handler (the host's advert in the record: a registered
-- name, or under an allowed prefix; no advert: anything) and whose active count is below
-- capacity; it then picks: least_loaded fewest
-- active tasks; round_robin next id after the cursor; priority the swarm whose priority is
-- nearest the task's (higher first); capability the best fit (fewest extra capabilities). Ties
-- go to the least loaded, then memory load, then id.
-- No head-of-line blocking: a ready task no swarm can take now (no swarm covers its
-- capabilities and may run its handler, or all that do are at capacity) is parked: it moves
-- from the ready zset to the parked zset of its set with the same score, keeps status 'ready'
-- and gets the reason in its record. Its set is its capability set, or 'CAPSET|HANDLER' when a
-- swarm covering the capabilities may not run the handler (room is then counted only on the
-- swarms that may). Each call first looks at every parked set: when swarms covering it have
-- room, that many tasks go back to the ready zset (priority order kept); otherwise a few entries
-- are swept (ended tasks dropped, reasons brought up to date) when the reason changed, else at
-- most once a second. Once every live swarm is full the call looks no further: the rest
-- wait in ready, in order, with no reason (all swarms are busy: plain queueing). A task of a set whose parked zset
-- was not passed stays in ready, the set enters the index, and the reply asks for another call.
-- returns {assigned, promoted, parked, more, {{swarm_id, task_id}, ...}};
--   more = 1 when calling again at once would do more (work bound reached, new set to pass,
--   dependents of ended tasks still to release: each call releases a bounded number)
local n = load_task_keys()
local cursor_key, leader_key, parked_index = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3]
local epoch, holder, instance, strategy = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local batch, scan = tonumber(ARGV[5]), tonumber(ARGV[6])
local assign_ms, beat_ms, nsets = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local fresh, why_not = check_epoch(TK.epoch, epoch, leader_key, holder, instance)
if not fresh then return fail('STALE_EPOCH', why_not) end
if strategy ~= 'least_loaded' and strategy ~= 'round_robin' and strategy ~= 'priority'
    and strategy ~= 'capability' then
  return fail('BAD_REQUEST', 'unknown strategy ' .. tostring(strategy))
end
if not (batch and scan and assign_ms and beat_ms and nsets) then
  return fail('BAD_REQUEST', 'argument count')
end
local SWEEP = 16  -- parked entries checked per set and sweep while nothing changes
local SWEEP_EVERY_MS = 1000  -- least time between two sweeps of a set whose reason holds
local now = now_ms()

-- dependents of ended tasks that their script's budget left waiting (lib/02_tasks.lua)
local waiting_left = drain_waiting(now)

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

local parked_key, sets = {}, {}
for j = 1, nsets do
  sets[j] = ARGV[9 + j]
  parked_key[sets[j]] = KEYS[n + 3 + j]
end
local first_swarm, first_queue = 10 + nsets, n + 4 + nsets

local swarms, held = {}, {}  -- held: covering swarms that take no work now, and why
for i = first_swarm, #ARGV do
  local s = hget_json(TK.swarms, ARGV[i])
  if s then
    s._caps = split(s.caps)
    if type(s.handlers) == 'string' then  -- the host's advert (host_swarms.lua)
      s._names, s._prefixes = {}, split(s.prefixes)
      for _, h in ipairs(split(s.handlers)) do s._names[h] = true end
    end
    if s.status == 'active' and s.hosts ~= '' and not s.paused
        and has_live_host(s, TK.heartbeats, now, beat_ms) then
      s._queue = KEYS[first_queue + (i - first_swarm)]
      swarms[#swarms + 1] = s
    else
      s._why = s.paused and 'paused' or (s.status ~= 'active' and s.status or 'without a live host')
      held[#held + 1] = s
    end
  end
end
table.sort(swarms, function(a, b) return a.id < b.id end)
table.sort(held, function(a, b) return a.id < b.id end)

-- "b,a" and "a,b" are one capability set
local capsets = {}
local function capset_of(caps)
  local known = capsets[caps]
  if not known then
    local need = split(caps)
    table.sort(need)
    known = {join(need), need}
    capsets[caps] = known
  end
  return known[1], known[2]
end

-- whether swarm s may run `handler` (nil: any), by its host's advert
local function may_run(s, handler)
  if not handler or not s._names or s._names[handler] then return true end
  for _, p in ipairs(s._prefixes) do
    if p ~= '' and string.sub(handler, 1, #p) == p then return true end
  end
  return false
end

-- nil and the room of the swarms covering `need` that may run `handler`, or why a task
-- needing them waits; third value: some live swarm covering `need` may not run `handler`
local function blocked(need, capset, handler)
  local capable, room, refusing = false, 0, {}
  for _, s in ipairs(swarms) do
    if covers(s._caps, need) then
      if may_run(s, handler) then
        capable = true
        room = room + math.max(0, s.capacity - s.active)
      elseif #refusing < 3 then
        refusing[#refusing + 1] = s.id
      end
    end
  end
  local restricted = #refusing > 0
  if room > 0 then return nil, room, restricted end
  if capable then return 'all capable swarms at capacity', 0, restricted end
  -- say which swarm would take it and why it does not: "no swarm has" would mislead when one
  -- is only paused or waiting for a host
  local why = {}
  for _, s in ipairs(held) do
    if covers(s._caps, need) and may_run(s, handler) and #why < 3 then
      why[#why + 1] = s.id .. ' ' .. s._why
    end
  end
  if #why > 0 then
    return 'swarms with capabilities [' .. capset .. '] take no work: ' .. table.concat(why, ', '),
           0, restricted
  end
  if restricted then
    return 'no swarm with capabilities [' .. capset .. '] may run handler ' .. handler .. ' ('
           .. table.concat(refusing, ', ') .. ' do not register it; start a worker with'
           .. ' --import of its module)', 0, true
  end
  return 'no active swarm has capabilities [' .. capset .. ']', 0, false
end

-- a parked set: its capability set and, for 'CAPSET|HANDLER', the handler
local function parse_set(set)
  local capset, handler = string.match(set, '^([^|]*)|(.+)$')
  if capset then return capset, handler end
  return set, nil
end

for _, set in ipairs(sets) do
  local key = parked_key[set]
  local capset, handler = parse_set(set)
  local why, room = blocked(split(capset), capset, handler)
  local meta = hget_json(parked_index, set) or {}
  if not why then
    local items = redis.call('ZRANGE', key, 0, math.min(room, batch) - 1, 'WITHSCORES')
    for i = 1, #items, 2 do
      redis.call('ZADD', TK.ready, items[i + 1], items[i])
      redis.call('ZREM', key, items[i])
    end
  elseif meta.reason ~= why or meta.refresh or now - (meta.swept_ms or 0) >= SWEEP_EVERY_MS then
    -- a sweep decodes each entry it looks at: at once when the reason changed, else at most
    -- once per SWEEP_EVERY_MS (ended tasks are also dropped when their set gets room)
    if meta.reason ~= why then meta.reason, meta.sweep, meta.refresh = why, nil, true end
    meta.swept_ms = now
    local m = meta.refresh and math.max(SWEEP, math.floor(scan / nsets)) or SWEEP
    local items = redis.call('ZRANGEBYSCORE', key, meta.sweep or '-inf', '+inf', 'WITHSCORES',
                             'LIMIT', 0, m)
    for i = 1, #items, 2 do
      local task = get_task(items[i])
      if not task or task.status ~= 'ready' then
        redis.call('ZREM', key, items[i])
      elseif task.reason ~= why then
        task.reason = why
        put_task(task, now)
      end
    end
    if #items < 2 * m then meta.sweep, meta.refresh = nil, nil
    else meta.sweep = '(' .. items[#items] end
  end
  if redis.call('ZCARD', key) == 0 then redis.call('HDEL', parked_index, set)
  else hset_json(parked_index, set, meta) end
end

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

local function park(task, set, why)
  if redis.call('HEXISTS', parked_index, set) == 0 then
    hset_json(parked_index, set, {reason = why})
  end
  local key = parked_key[set]
  if not key then return false end
  redis.call('ZREM', TK.ready, task.id)
  redis.call('ZADD', key, ready_score(task), task.id)
  return true
end

-- Once every live swarm is full, nothing more can be assigned and every task looked at would
-- only be parked (and promoted again when a slot frees): the rest wait in ready, in order.
-- With no live swarm at all, tasks are still looked at, to park them with the reason.
local room = 0
for _, s in ipairs(swarms) do room = room + math.max(0, s.capacity - s.active) end
if #swarms == 0 then room = math.huge end

local out = {0, promoted, 0, 0, {}}
local assigned, parked, examined, skipped, more = 0, 0, 0, 0, 0
local at_end = false
while assigned < batch and examined < scan and room > 0 do
  -- entries left in place (sets without a parked zset yet) are stepped over by offset
  local ids = redis.call('ZRANGE', TK.ready, skipped, skipped + math.min(100, scan - examined) - 1)
  if #ids == 0 then at_end = true break end
  for _, id in ipairs(ids) do
    if assigned >= batch or room <= 0 then break end
    examined = examined + 1
    local task = get_task(id)
    if not task or task.status ~= 'ready' then
      redis.call('ZREM', TK.ready, id)
    else
      local capset, need = capset_of(task.caps)
      local eligible = {}
      for _, s in ipairs(swarms) do
        if s.active < s.capacity and covers(s._caps, need) and may_run(s, task.handler) then
          eligible[#eligible + 1] = s
        end
      end
      if #eligible == 0 then
        local why, _, restricted = blocked(need, capset, task.handler)
        if task.reason ~= why then
          task.reason = why
          put_task(task, now)
        end
        if park(task, restricted and (capset .. '|' .. task.handler) or capset, why) then
          parked = parked + 1
          examined = examined + 1  -- a move and a rewrite: twice the work of a look
        else
          skipped = skipped + 1
          more = 1
        end
      else
        local s = choose(task, need, eligible)
        redis.call('ZREM', TK.ready, id)
        task.swarm = s.id
        task.reason = ''
        set_task_status(task, 'assigned', now)
        task.epoch = tonumber(epoch)
        task.assigned_ms = now
        task.lease_until = now + assign_ms
        redis.call('ZADD', TK.leases, task.lease_until, id)
        redis.call('ZADD', s._queue, ready_score(task), id)
        put_task(task, now)
        s.active = s.active + 1
        s._dirty = true
        assigned = assigned + 1
        room = room - 1
        out[5][#out[5] + 1] = {s.id, id}
      end
    end
  end
end
if not at_end and room > 0 and redis.call('ZCARD', TK.ready) > skipped then more = 1 end
if waiting_left then more = 1 end
for _, s in ipairs(swarms) do
  if s._dirty then
    s._dirty, s._queue, s._caps, s._names, s._prefixes = nil, nil, nil, nil, nil
    hset_json(TK.swarms, s.id, s)
  end
end
if strategy == 'round_robin' and cursor ~= '' then redis.call('SET', cursor_key, cursor) end
out[1], out[3], out[4] = assigned, parked, more
return out
