-- dispatch_tasks: the leader assigns a batch of ready tasks to swarms (fenced: epoch and lease).
-- KEYS[1..26]    - task keyset (lib/02_tasks.lua)
-- KEYS[27]       - round-robin cursor ({ns}:rr_cursor): id of the swarm chosen last
-- KEYS[28]       - leader key ({ns}:leader): must name the caller (lib/01_common.lua)
-- KEYS[29]       - parked index ({ns}:tasks:parked, hash parked set -> JSON {reason, sweep})
-- KEYS[30..29+P] - parked zset of each parked set named in ARGV[10..9+P], same order
-- Swarms come from the dispatch index (lib/01b_swarm_index.lua) next to the swarms hash
-- (KEYS[11]), and the queue of the swarm picked is named from it ({ns}:queue:<id>).
-- prefetch: KEYS[12] KEYS[15] KEYS[27] KEYS[28]
--   (epoch, events watch, cursor and leader key, read with the request key in one MGET:
--   lib/01_common.lua read_string)
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
-- Every strategy considers only active, unpaused swarms with a live host whose capabilities
-- cover the task's, that may run its handler (the host's advert in the record: a registered
-- name, or under an allowed prefix; no advert: anything) and whose active count is below
-- capacity; it then picks: least_loaded fewest
-- active tasks; round_robin next id after the cursor; priority the swarm whose priority is
-- nearest the task's (higher first); capability the best fit (fewest extra capabilities). Ties
-- go to the least loaded, then memory load, then id. A picked swarm found without a live host is
-- held in the index (at most HOLDS per call); a few held ones are looked at again by each call
-- that has work (an idle call returns first: decision 83).
-- A call stops after BUDGET_US of Redis time and asks for another.
-- No head-of-line blocking: a ready task no swarm can take now (no swarm covers its
-- capabilities and may run its handler, or all that do are at capacity) is parked: it moves
-- from the ready zset to the parked zset of its set with the same score, keeps status 'ready'
-- and gets the reason in its record. Its set is its capability set, or 'CAPSET|HANDLER' when a
-- swarm covering the capabilities may not run the handler (room is then counted only on the
-- swarms that may). Each call first looks at every parked set: when swarms covering it have
-- room, that many tasks go back to the ready zset (priority order kept); otherwise a few entries
-- are swept (ended tasks dropped, reasons brought up to date) when the reason changed, else at
-- most once a second. Once every open swarm is full the call looks no further: the rest wait
-- in ready, in order, with no reason (all swarms are busy: plain queueing). A task of a set
-- whose parked zset was not passed stays in ready, the set enters the index, and the reply
-- asks for another call.
-- Each swarm given tasks is woken: an empty PUBLISH on its wake channel (lib/01_common.lua wake).
-- returns {assigned, promoted, parked, more, {{swarm_id, task_id}, ...}, {parked set, ...},
--   ms until the first delayed task is due (-1: none)};
--   more = 1 when calling again at once would do more (work or time bound reached, new set,
--   dependents of ended tasks still to release: each call releases a bounded number); the
--   parked sets are the parked index's fields after this call: the caller passes them next time
--   instead of reading the index first
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
-- Redis time a call may take before it stops and asks for another (the bound holds whatever
-- one assignment costs on this server)
local BUDGET_US = 5000
local started = redis.call('TIME')
local function elapsed_us()
  local t = redis.call('TIME')
  return (tonumber(t[1]) - tonumber(started[1])) * 1000000 + tonumber(t[2]) - tonumber(started[2])
end
-- (the same clock reading as now_ms: one TIME less per call)
local now = tonumber(started[1]) * 1000 + math.floor(tonumber(started[2]) / 1000)

-- dependents of ended tasks that their script's budget left waiting (lib/02_tasks.lua)
local waiting_left, drained = drain_waiting(now)

-- the first delayed task: none due (the usual case) leaves `first_due` for the reply;
-- otherwise the due ones are promoted and the reply reads the delayed set again
local first_due = redis.call('ZRANGE', TK.delayed, '0', '0', 'WITHSCORES')
local promoted = 0
if first_due[2] and tonumber(first_due[2]) <= now then
  first_due = nil
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', TK.delayed, '-inf', ms_text(now), 'LIMIT',
                                 '0', ARGV[6])) do
    redis.call('ZREM', TK.delayed, id)
    local task = get_task(id)
    if task and task.status == 'failed' then
      task.reason = ''
      make_ready(task, now)
      put_task(task, now)
      promoted = promoted + 1
    end
  end
end

-- Nothing ready, parked or due, no dependents left to release: the reply is the one the whole
-- call would give (nothing assigned, no parked set, nothing more), without reading the swarm
-- indexes or making the call's tables and functions (decision 83). Held swarms are looked at
-- again by the next call that has work, before it picks a swarm (below), so none is passed
-- over for want of this call's look. A call that wrote nothing records no request outcome
-- (REQUEST.none): a retry runs it again, which writes nothing either.
if first_due and not waiting_left and nsets == 0
    and redis.call('EXISTS', TK.ready, parked_index) == 0 then
  if not drained then REQUEST.none = true end
  return {0, 0, 0, 0, {}, {},
          first_due[2] and math.max(0, tonumber(first_due[2]) - now) or -1}
end

local parked_key, sets = {}, {}
for j = 1, nsets do
  sets[j] = ARGV[9 + j]
  parked_key[sets[j]] = KEYS[n + 3 + j]
end

swarm_index_keys(TK.swarms)
-- held swarms looked at again per call: 16 (the last index as text: a number handed to
-- redis.call costs a '%.17g')
local HOLDS, RECHECK_LAST = 64, '15'
local holds = 0

local profiles = {}  -- pid -> {caps (list), names (set) or nil, prefixes, prio}
local raw = redis.call('HGETALL', SX.profiles)
for i = 1, #raw, 2 do
  if tonumber(raw[i]) then
    local p = dispatch_profile(raw[i], raw[i + 1])  -- lib/01b_swarm_index.lua (read only)
    if p then profiles[#profiles + 1] = p end
  end
end
table.sort(profiles, by_profile_id)  -- lib/06_dispatch.lua, as capset_of, may_run,
-- some_ids and parse_set below

-- index entries, read only (memoized by their text between calls, lib/01_common.lua): hold()
-- changes a copy and keeps that one for the rest of the call
local entries = {}
local function entry(sid)
  local e = entries[sid]
  if e == nil then
    e = hget_json_ro(SX.entry, sid) or false
    entries[sid] = e
  end
  return e
end

local function hold(sid, e, held)
  local copy = {}
  for k, v in pairs(e) do copy[k] = v end
  swarm_index_hold(sid, copy, held, now)
  entries[sid] = copy
end

-- a host's beat does not change within a call: looked up once per swarm, not once per task
local alive = {}
local function live(e)
  local key = e.hosts or ''
  local known = alive[key]
  if known == nil then
    known = has_live_host(e, TK.heartbeats, now, beat_ms)
    alive[key] = known
  end
  return known
end

-- held for want of a live host: a few of them each call, oldest first, open again when one beat
for _, sid in ipairs(redis.call('ZRANGE', SX.stale, '0', RECHECK_LAST)) do
  local e = entry(sid)
  if not e or e.st ~= 'held' or e.why ~= 'without a live host' or e.hosts == '' then
    redis.call('ZREM', SX.stale, sid)
  elseif live(e) then
    hold(sid, e, false)
  else
    redis.call('ZADD', SX.stale, ms_text(now), sid)
  end
end

-- Index zset keys (kind, profile) and queue keys (swarm), built once per call
key_memos_for(TK.swarms)  -- kind_key, swarm_queue: lib/01b_swarm_index.lua

load_rank_begin()  -- the load ranking kept in the call: lib/05_load_ranking.lua

-- a swarm of profile `pid` from the index zset `kind`, checked for a live host (those without
-- are held, up to HOLDS a call): the first at or after `from` (a ZRANGEBYLEX bound) or the first
-- by score ('load', from the ranking kept in the call); nil when there is none, and true as
-- second value when the hold budget ran out
local function first_live(kind, pid, from)
  local key = kind_key(kind, pid)
  while true do
    local sid, score
    if from then
      local top = redis.call('ZRANGEBYLEX', key, from, '+', 'LIMIT', '0', '1')
      sid = top[1]
    else
      local t = load_top(pid)
      sid, score = t[2], t[3]
    end
    if not sid then return nil end
    local e = entry(sid)
    if e and live(e) then return sid, score or 0 end
    if holds >= HOLDS then return nil, true end
    holds = holds + 1
    if e then
      if e.p then load_changes(e.p) end
      load_changes(pid)
      hold(sid, e, true)
    else
      load_changes(pid)
      redis.call('ZREM', key, sid)
    end
  end
end

-- Slots taken by this call's assignments (decision 61). A swarm's load and rr zsets change at
-- once (the next choice reads them); its active count and its profile's room are written once
-- per call (flush_slots), from the count read at its first assignment, and blocked() subtracts
-- the room taken so far: the same choices and the same end state as swarm_slot_change(+1) per
-- task (lib/01b_swarm_index.lua), without two HINCRBYs and a HGET per task.
local taken, taken_order, room_taken, room_order = {}, {}, {}, {}
local function take_slot(sid, e)
  local t = taken[sid]
  if not t then
    local a = swarm_active(sid)
    t = {a0 = a, a = a, mem = 0}
    if e.st == 'open' then
      local first = string.match(e.hosts or '', '^[^,]+')
      local mem = first and tonumber(redis.call('HGET', SX.mem, first) or '') or 0
      t.mem = math.min(1, math.max(0, mem))
    end
    taken[sid], taken_order[#taken_order + 1] = t, sid
  end
  local active = t.a
  t.a = active + 1
  if e.st ~= 'open' then return end
  local r0, r1 = math.max(0, e.cap - active), math.max(0, e.cap - t.a)
  if r1 ~= r0 then
    if not room_taken[e.p] then room_taken[e.p], room_order[#room_order + 1] = 0, e.p end
    room_taken[e.p] = room_taken[e.p] + r0 - r1
  end
  if r1 > 0 then
    set_load(e.p, sid, 2 * t.a + t.mem)
  else
    set_load(e.p, sid, nil)
    redis.call('ZREM', kind_key('rr', e.p), sid)
  end
end

local function flush_slots()
  flush_loads()
  for _, sid in ipairs(taken_order) do
    local t = taken[sid]
    redis.call('HINCRBY', SX.active, sid, string.format('%d', t.a - t.a0))
  end
  for _, pid in ipairs(room_order) do
    if room_taken[pid] ~= 0 then
      redis.call('HINCRBY', SX.room, pid, string.format('%d', -room_taken[pid]))
    end
  end
end

-- nil and the room of the swarms covering `need` that may run `handler`, or why a task
-- needing them waits; third value: some open swarm covering `need` may not run `handler`
local function blocked(need, capset, handler)
  local capable, room, refusing, waiting = false, 0, {}, {}
  for _, p in ipairs(profiles) do
    if covers(p._caps, need) then
      local allowed = may_run(p, handler)
      if redis.call('ZCARD', sx_key('open', p.id)) > 0 then
        if allowed then
          capable = true
          room = room + (tonumber(redis.call('HGET', SX.room, p.id) or '0') or 0)
            - (room_taken[p.id] or 0)
        else
          refusing[#refusing + 1] = p.id
        end
      end
      if allowed then waiting[#waiting + 1] = p.id end
    end
  end
  local restricted = #refusing > 0
  if room > 0 then return nil, room, restricted end
  if capable then return 'all capable swarms at capacity', 0, restricted end
  -- say which swarm would take it and why it does not: "no swarm has" would mislead when one
  -- is only paused or waiting for a host
  local why = {}
  for _, sid in ipairs(some_ids('held', waiting, 3)) do
    local e = entry(sid)
    why[#why + 1] = sid .. ' ' .. (e and e.why or 'without a live host')
  end
  if #why > 0 then
    return 'swarms with capabilities [' .. capset .. '] take no work: ' .. table.concat(why, ', '),
           0, restricted
  end
  if restricted then
    return 'no swarm with capabilities [' .. capset .. '] may run handler ' .. handler .. ' ('
           .. table.concat(some_ids('open', refusing, 3), ', ') .. ' do not register it; start a'
           .. ' worker with --import of its module)', 0, true
  end
  return 'no active swarm has capabilities [' .. capset .. ']', 0, false
end

local unparked_more = false  -- a parked set has room for more than this call's batch took
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
    if room > batch and #items == 2 * batch then unparked_more = true end
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

-- profiles whose swarms cover `need` and may run `handler`, by (capset, handler)
-- (by capset, then handler: no key string built per task)
local eligible_cache = {}
local function eligible(capset, need, handler)
  local by_handler = eligible_cache[capset]
  if not by_handler then
    by_handler = {}
    eligible_cache[capset] = by_handler
  end
  local found = by_handler[handler or false]
  if not found then
    found = {}
    for _, p in ipairs(profiles) do
      if covers(p._caps, need) and may_run(p, handler) then found[#found + 1] = p end
    end
    by_handler[handler or false] = found
  end
  return found
end

-- the rank of profile p for `task` under the strategy (lower first; the load breaks ties)
local function rank(p, task)
  if strategy == 'priority' then
    return math.abs(p.prio - task.prio) * 2 ^ 20 + p.prio
  elseif strategy == 'capability' then
    return #p._caps
  end
  return 0
end

-- the swarm for `task` among the profiles `ps`: nil, and true when the hold budget ran out
local cursor = strategy == 'round_robin' and (read_string(cursor_key) or '') or ''
local function choose(task, ps)
  local best, best_rank, best_score, starved = nil, nil, nil, false
  if strategy == 'round_robin' then
    for _, from in ipairs({'(' .. cursor, '-'}) do
      for _, p in ipairs(ps) do
        local sid, _, out = first_live('rr', p.id, from)
        starved = starved or out
        if sid and (not best or sid < best) then best = sid end
      end
      if best or starved then break end
    end
    if best then cursor = best end
    return best, starved
  end
  for _, p in ipairs(ps) do
    local r = rank(p, task)
    if not best or r <= best_rank then
      local sid, score, out = first_live('load', p.id)
      starved = starved or out
      if sid and (not best or r < best_rank or score < best_score
                  or (score == best_score and sid < best)) then
        best, best_rank, best_score = sid, r, score
      end
    end
  end
  return best, starved
end

local function park(task, set, why)
  if redis.call('HEXISTS', parked_index, set) == 0 then
    hset_json(parked_index, set, {reason = why})
  end
  local key = parked_key[set]
  if not key then return false end
  redis.call('ZREM', TK.ready, task.id)
  redis.call('ZADD', key, ready_score_text(task), task.id)
  return true
end

-- Once every open swarm is full, nothing more can be assigned and every task looked at would
-- only be parked (and promoted again when a slot frees): the rest wait in ready, in order.
-- With no open swarm at all, tasks are still looked at, to park them with the reason.
-- The room of every profile in one HMGET (only open swarms count in it: lib/01b_swarm_index.lua
-- sx_put): some room means some swarm is open; without any, the open zsets say whether one is.
local room, any_open = 0, false
if #profiles > 0 then
  local pids = {}
  for i, p in ipairs(profiles) do pids[i] = p.id end
  local rooms = redis.call('HMGET', SX.room, unpack(pids))
  for i = 1, #profiles do room = room + (tonumber(rooms[i] or '0') or 0) end
  any_open = room > 0
  if not any_open then
    for _, p in ipairs(profiles) do
      if redis.call('ZCARD', sx_key('open', p.id)) > 0 then
        any_open = true
        break
      end
    end
  end
end
if not any_open then room = math.huge end

local out = {0, promoted, 0, 0, {}}
local assigned, parked, examined, skipped, more = 0, 0, 0, 0, 0
local at_end, starved = false, false
-- Assignments are written per page (decision 71): the ready ZREMs, leases and records in one
-- command each, each swarm's queue entries in one ZADD, before the next page is read (it is
-- read by offset, after those ZREMs). A page holds each id once, so no record is read after
-- this call changed it.
local ready_rems, lease_args, record_args, queue_args, queue_keys = {}, {}, {}, {}, {}
local function write_page(last)
  if #ready_rems == 0 then return end  -- (every assigned task left ready)
  call_chunked('ZREM', TK.ready, ready_rems)
  if #lease_args > 0 then
    call_chunked('ZADD', TK.leases, lease_args)
    call_chunked('HSET', TK.tasks, record_args)
    for _, key in ipairs(queue_keys) do call_chunked('ZADD', key, queue_args[key]) end
  end
  if last then return end  -- (the call's last page: no new lists)
  ready_rems, lease_args, record_args, queue_args, queue_keys = {}, {}, {}, {}, {}
end
local function assign_all()
  while assigned < batch and examined < scan and not starved and room > 0 do
    write_page()
    -- entries left in place (sets without a parked zset yet) are stepped over by offset
    -- a page about the size of what is left to assign (twice, as some may be parked or
    -- stale): reading 100 ids for a batch of 8 was a fifth of a small call's time
    local page = math.min(100, scan - examined, 2 * (batch - assigned) + 8)
    local ids = redis.call('ZRANGE', TK.ready, string.format('%d', skipped),
                           string.format('%d', skipped + page - 1))
    if #ids == 0 then at_end = true break end
    -- records read in one HMGET for as many ids as tasks are left to assign (decision 75;
    -- nothing in the loop writes another id's record, so each is read as get_task would)
    local raws, read_from, read_to = nil, 0, 0
    for at, id in ipairs(ids) do
      if assigned >= batch or starved or room <= 0 then break end
      if examined % 8 == 7 and elapsed_us() > BUDGET_US then
        starved, more = true, 1
        break
      end
      examined = examined + 1
      if at > read_to then
        read_to = math.min(#ids, at + math.max(1, batch - assigned) - 1)
        raws, read_from = redis.call('HMGET', TK.tasks, unpack(ids, at, read_to)), at - 1
      end
      local raw = raws[at - read_from]
      local task = raw and decode_task(raw)
      if not task or task.status ~= 'ready' then
        ready_rems[#ready_rems + 1] = id
      else
        local capset, need = capset_of(task.caps)
        local sid
        sid, starved = choose(task, eligible(capset, need, task.handler))
        if starved then
          more = 1  -- the task stays ready: the next call holds more and looks again
        elseif not sid then
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
          ready_rems[#ready_rems + 1] = id
          -- (pack_sparse below: fields at their default are set nil, lib/02_tasks.lua)
          task.swarm = sid
          task.reason = nil
          -- set_task_status(task, 'assigned') without writes: ready and assigned have no
          -- status index and neither is running
          local previous = task.status
          task.status = 'assigned'
          task_event(task, previous, now)
          task.epoch = tonumber(epoch)
          if task.epoch == 0 then task.epoch = nil end
          -- assigned at updated_ms (reap_leases.lua keeps it as assigned_ms when it extends the
          -- deadline): one 13-digit number less to encode and decode
          task.assigned_ms = nil
          task.lease_until = now + assign_ms
          local n = #lease_args
          lease_args[n + 1], lease_args[n + 2] = deadline_text(task.lease_until), id
          record_args[n + 1], record_args[n + 2] = id, pack_sparse(task, now)
          local qkey = swarm_queue(sid)
          local q = queue_args[qkey]
          if not q then
            q = {}
            queue_args[qkey] = q
            queue_keys[#queue_keys + 1] = qkey
          end
          q[#q + 1] = ready_score_text(task)
          q[#q + 1] = id
          take_slot(sid, entry(sid))
          assigned = assigned + 1
          room = room - 1
          out[5][#out[5] + 1] = {sid, id}
        end
      end
    end
  end
end
-- the slots taken are written even if an assignment failed midway (its writes are not rolled
-- back: the counts must cover the tasks assigned before it)
local ok, err = pcall(assign_all)
write_page(true)
flush_slots()
if not ok then error(err, 0) end
if (not at_end and room > 0 and redis.call('ZCARD', TK.ready) > skipped) or unparked_more
    or waiting_left then
  more = 1
end
if strategy == 'round_robin' and cursor ~= '' then redis.call('SET', cursor_key, cursor) end
local woken = {}
for _, a in ipairs(out[5]) do
  if not woken[a[1]] then
    woken[a[1]] = true
    wake(TK.tasks, 'swarm:' .. a[1])
  end
end
out[1], out[3], out[4] = assigned, parked, more
out[6] = redis.call('HKEYS', parked_index)
-- (nothing after the promotions changes the delayed set)
local due = first_due or redis.call('ZRANGE', TK.delayed, '0', '0', 'WITHSCORES')
out[7] = due[2] and math.max(0, tonumber(due[2]) - now_ms()) or -1
return out
