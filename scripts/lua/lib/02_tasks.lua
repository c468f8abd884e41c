-- multiswarm Lua prelude, part 2: the task state machine.
-- Task scripts pass the same first 26 KEYS (multiswarm/keys.py Keys.task_keyset):
--   1 tasks (hash id->MessagePack record, fields at zero defaults left out: put_task; JSON
--     records of earlier versions read too)   2 payload (hash)
--   3 result (hash)   4 dependents (hash id->csv)
--   5 ready (zset score=priority*1e13+seq)   6 delayed (zset score=due ms)
--   7 leases (zset score=deadline ms: lease of a running task, assignment deadline of an
--     assigned one)   8 dlq (stream)   9 completions (stream)
--   10 stats (hash)   11 swarms (hash id->JSON)   12 leader epoch   13 workers   14 heartbeats
--   15 events watch (string: set while someone listens to task events)
--   16 running by worker (zset of '<worker id>|<task id>', score 0: each worker's running tasks)
--   17 waiting (zset, score 0: '<dep>|<task>' edges and '!<outcome>|<dep>' queued releases)
--   18 readers (zset, score 0: '<dep>|<task>' for each task that will read dep's result)
--   19..26 status indexes (zset id->updated ms): pending ready assigned running completed
--          failed dead cancelled; only pending, failed and the terminal ones are kept
--          (INDEXED_STATUS, decision 61): a ready task is in 5 (or a parked zset), an assigned
--          or running one in 7, a running one in 16; 20..22 are still passed, and emptied by
--          prune_tasks.lua (left by earlier versions)
-- Lifecycle: pending -> ready -> assigned -> running -> completed | failed -> ready (backoff) |
-- dead (dead-letter); cancelled from any non-terminal status. Completion is recorded once.

local TK = {}
local TASK_STATUS_KEY = {}
local STATUS_ORDER = {'pending', 'ready', 'assigned', 'running', 'completed', 'failed', 'dead',
                      'cancelled'}
local TERMINAL = {completed = true, dead = true, cancelled = true}
-- Statuses with an index zset (decision 61). ready, assigned and running have none: their
-- tasks are exactly the members of the ready zset and the parked zsets (ready), of the leases
-- zset (assigned or running) and of the running-by-worker zset (running), so an index of them
-- cost a ZREM and a ZADD per transition (6 commands a task) to duplicate what is there.
local INDEXED_STATUS = {pending = true, failed = true, completed = true, dead = true,
                        cancelled = true}
local PRIORITY_SPAN = 1e13
-- numbers handed to redis.call are formatted with '%.17g' (about 0.3 µs each, decision 53):
-- constants go as text
local DLQ_MAXLEN = '10000'
local COMPLETIONS_MAXLEN = '1000000'
-- waiting tasks one script call may release or cancel (drain_waiting): 50-150 µs each, so a
-- call that releases a full budget and then assigns stays under 10 ms (issue 12)
local WAITING_BUDGET = 25
local waiting_budget = WAITING_BUDGET
-- '<ns>:events' while someone listens to task events, false while nobody does, nil: not read
-- yet in this call (task_event)
local events_channel = nil
-- Per call (reset by load_task_keys): whether the waiting zset / the legacy dependents hash
-- exist (nil: not read yet), so a task without dependents costs no lookup when neither does;
-- and, while a script batches (begin_batch), the slot releases and stats counts it adds up to
-- write once per swarm and counter at end_batch.
local waiting_state, legacy_state = nil, nil
local batch = nil
-- Per call: a function queue_waiting runs before it releases or cancels waiting tasks (reads
-- and writes other tasks' records): finish_tasks.lua writes the completions it batched first
local before_drain = nil
-- set when an ended task had waiting dependents (released or cancelled now or by the leader's
-- next calls): the leader has work even if no slot freed enough (finish_tasks.lua)
local dependents_queued = false
-- the text of the last time stamp given to ms_text
local ms_for, ms_str = nil, nil
-- ms -> text of the deadlines (deadline_text): a pure function, kept between calls (decision 83:
-- a table a call costs ~1 K instructions), emptied at MEMO_MAX entries
local deadline_texts, deadline_n = {}, 0

-- The per-call state above, reset at each call's start (load_task_keys, load_claim_keys).
local function task_call_begin()
  waiting_budget, events_channel = WAITING_BUDGET, nil
  waiting_state, legacy_state, batch, before_drain = nil, nil, nil, nil
  if deadline_n >= MEMO_MAX then deadline_texts, deadline_n = {}, 0 end
  dependents_queued = false
end

local function load_task_keys()
  TK.tasks, TK.payload, TK.result, TK.dependents = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  TK.ready, TK.delayed, TK.leases, TK.dlq = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
  TK.completions, TK.stats, TK.swarms, TK.epoch = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
  TK.workers, TK.heartbeats, TK.events_watch = KEYS[13], KEYS[14], KEYS[15]
  TK.running_by_worker, TK.waiting, TK.readers = KEYS[16], KEYS[17], KEYS[18]
  task_call_begin()
  for i, s in ipairs(STATUS_ORDER) do TASK_STATUS_KEY[s] = KEYS[18 + i] end
  return 26
end

-- claim_tasks.lua's keys: the 8 task keys it uses, not all 26 (decision 83: each key a call
-- passes costs ~0.55 K instructions), in multiswarm/ops/tasks.py CLAIM_KEYS order; the others
-- are unset, so a use of one fails instead of naming another call's key.
local function load_claim_keys()
  TK.tasks, TK.payload, TK.leases, TK.stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  TK.swarms, TK.workers, TK.events_watch, TK.running_by_worker = KEYS[5], KEYS[6], KEYS[7],
    KEYS[8]
  TK.result, TK.dependents, TK.ready, TK.delayed, TK.dlq = nil, nil, nil, nil, nil
  TK.completions, TK.epoch, TK.heartbeats, TK.waiting, TK.readers = nil, nil, nil, nil, nil
  task_call_begin()
  for _, s in ipairs(STATUS_ORDER) do TASK_STATUS_KEY[s] = nil end
  return 8
end

-- Arguments per variadic command (Lua's C stack; an even count keeps pairs together).
local CHUNK_ARGS = 1000

-- `cmd key args...` in as few commands as CHUNK_ARGS allows (variadic HSET, ZADD, ZREM: one
-- command for many fields or members costs one dispatch instead of one each, decision 71)
local function call_chunked(cmd, key, args)
  local n = #args
  for i = 1, n, CHUNK_ARGS do
    redis.call(cmd, key, unpack(args, i, math.min(n, i + CHUNK_ARGS - 1)))
  end
end

-- HMGET of the fields in list `ids` from hash `key`: the reply's list (false for a missing one)
local function hmget_list(key, ids)
  local n = #ids
  if n <= CHUNK_ARGS then return redis.call('HMGET', key, unpack(ids)) end
  local out = {}
  for i = 1, n, CHUNK_ARGS do
    local j = math.min(n, i + CHUNK_ARGS - 1)
    local got = redis.call('HMGET', key, unpack(ids, i, j))
    for k = 1, j - i + 1 do out[i + k - 1] = got[k] end
  end
  return out
end

-- `ms` (an integer count of ms) as text, formatted once per call for the usual `now`
local function ms_text(ms)
  if ms ~= ms_for then ms_for, ms_str = ms, string.format('%d', ms) end
  return ms_str
end

-- A lease deadline (an integer count of ms) as text, formatted once per call and value: the
-- tasks a call assigns or claims mostly share one (now + the same lease), and a number given
-- to redis.call is formatted with '%.17g' (~2.4 K instructions for a 13-digit one, callgrind)
local function deadline_text(ms)
  local text = deadline_texts[ms]
  if not text then
    text = string.format('%d', ms)
    deadline_texts[ms], deadline_n = text, deadline_n + 1
  end
  return text
end

-- Add `n` to counter `field` of the stats hash: at once, or at end_batch while batching.
local function stat_add(field, n)
  if not batch then
    redis.call('HINCRBY', TK.stats, field, n == 1 and '1' or n)
    return
  end
  local counts = batch.stats
  if not counts[field] then
    counts[field] = 0
    batch.stat_order[#batch.stat_order + 1] = field
  end
  counts[field] = counts[field] + n
end

-- Batching (decision 53): from begin_batch to end_batch, slot releases and stats counts are
-- added up and written once per swarm and counter. Only for scripts that read neither the
-- active counts, the swarm indexes nor the stats in between (finish_tasks), and that call
-- end_batch even after an error (a retry would not free those slots again).
local function begin_batch()
  batch = {slots = {}, slot_order = {}, stats = {}, stat_order = {}}
end

-- Returns true when a swarm whose slots it freed now has room for a quarter of its capacity
-- or more (at least 1): worth a dispatch round (finish_tasks.lua's wake-up watermark).
local function end_batch()
  local b = batch
  if not b then return false end
  batch = nil
  local roomy = false
  for _, sid in ipairs(b.slot_order) do
    local new, cap = swarm_slot_change(TK.swarms, sid, -b.slots[sid])  -- lib/01b_swarm_index.lua
    if cap and 4 * (cap - new) >= cap then roomy = true end
  end
  for _, field in ipairs(b.stat_order) do stat_add(field, b.stats[field]) end
  return roomy
end

-- Sparse records (decision 57): put_task leaves out a field whose value is its default below,
-- and get_task's metatable reads a missing one as that default. The encoder's cost is per field
-- and most of these are 0 or '' most of a task's life. Records written in full (by earlier
-- versions) read the same and are written sparse at their next change. The defaults are
-- multiswarm/messages.py Task's, so Python decodes a sparse record to the same Task
-- (tests/integration/test_task_record_layout.py checks both lists); only 0 and '' defaults, so
-- what a stored record means never rests on a non-zero default of the code.
-- DEFAULT_FIELDS lists the same fields: a numeric loop, as pairs/rawget are C calls that cost
-- more than the fields they drop.
local TASK_DEFAULTS = {
  name = '', caps = '', swarm = '', worker = '', agent = '', token = '', attempts = 0,
  deps = '', deps_left = 0, started_ms = 0, finished_ms = 0, lease_until = 0, due_ms = 0,
  reason = '', error = '', completed_by = '', epoch = 0, result_ttl_ms = 0,
  progress = 0, progress_note = '', progress_ms = 0,
}
local TASK_MT = {__index = TASK_DEFAULTS}
-- the metatable of a record decoded from MessagePack: only pack_task wrote those, so none of
-- its DEFAULT_FIELDS holds its default (pack_sparse, decision 75)
local TASK_MT_SPARSE = {__index = TASK_DEFAULTS}
local DEFAULT_FIELDS = {'name', 'caps', 'swarm', 'worker', 'agent', 'token', 'attempts', 'deps',
                        'deps_left', 'started_ms', 'finished_ms', 'lease_until', 'due_ms',
                        'reason', 'error', 'completed_by', 'epoch', 'result_ttl_ms',
                        'progress', 'progress_note', 'progress_ms'}

-- Records are MessagePack maps (decision 64): cmsgpack packs an integral number as an integer
-- (no '%.14g'/strtod per number as cjson does: a 13-digit time stamp cost ~2.6 K instructions
-- each way) and packs only the table's own fields, so the metatable's defaults stay out.
-- Every number of a record but one is an integer below 2^53 (multiswarm/messages.py
-- check_settings bounds the settings before submit_tasks.lua sees them; the rest are times in
-- ms, counts and sequence numbers), so it is exact in Lua and an int in Python (messages.py
-- decode_task); the one is `progress`, a fraction a handler reports (record_progress.lua). A record written by an earlier version is JSON:
-- it starts with '{' (a MessagePack map starts with 0x80-0x8f or 0xde), is read as JSON and
-- written back as MessagePack at its next change.
local JSON_OPEN = 123  -- '{'

-- A record's text -> its table (with the defaults), or nil when it cannot be decoded.
local function decode_task(raw)
  local ok, task
  if string.byte(raw, 1) == JSON_OPEN then
    ok, task = pcall(cjson.decode, raw)
    if not ok or type(task) ~= 'table' then return nil end
    return setmetatable(task, TASK_MT)
  end
  ok, task = pcall(cmsgpack.unpack, raw)
  if not ok or type(task) ~= 'table' then return nil end
  return setmetatable(task, TASK_MT_SPARSE)
end

-- The task record, or nil (and the raw text when it cannot be decoded).
local function get_task(id)
  local raw = redis.call('HGET', TK.tasks, id)
  if not raw then return nil end
  local task = decode_task(raw)
  if not task then return nil, raw end
  return task
end

-- The record's text as put_task stores it (scripts that write many records in one HSET)
local function pack_task(task, now)
  task.updated_ms = now
  if not getmetatable(task) then setmetatable(task, TASK_MT) end
  for i = 1, #DEFAULT_FIELDS do
    local field = DEFAULT_FIELDS[i]
    if task[field] == TASK_DEFAULTS[field] then task[field] = nil end
  end
  return cmsgpack.pack(task)
end

-- pack_task for a record decoded from MessagePack whose caller set no field of DEFAULT_FIELDS
-- to its default since (it sets nil instead): nothing to drop, so no loop over the 21 fields
-- (~7 K instructions a record, decision 75). Any other record goes through pack_task.
local function pack_sparse(task, now)
  if getmetatable(task) ~= TASK_MT_SPARSE then return pack_task(task, now) end
  task.updated_ms = now
  return cmsgpack.pack(task)
end

local function put_task(task, now)
  redis.call('HSET', TK.tasks, task.id, pack_task(task, now))
end

-- Task lifecycle events: at every status change the script that makes it PUBLISHes one
-- envelope (multiswarm/messages.py Envelope: type 'task.<event>', sender 'redis', the task's
-- fields as payload) on '<ns>:events' (multiswarm/keys.py Keys.ch_events; the namespace is read
-- off the tasks key '{<ns>}:tasks', or '{<ns>:p<k>.<j>}:tasks' in partition k: the namespace has
-- no ':', and every partition's events go to the one namespace-wide channel). So no transition goes unreported (reaps and cascades
-- included) and none costs a round trip. Fire and forget: no history; unsigned, because a
-- script cannot sign: receivers accept these unsigned on that channel only (docs/messaging.md).
-- Only while someone listens: every listener keeps TK.events_watch alive (a TTL it renews), so
-- an unwatched deployment pays one EXISTS per script call instead of an encode and a PUBLISH
-- per transition (about 11 µs each, five per task: decision 37).
local EVENT_OF = {running = 'task.started'}
local EVENT_TEXT_MAX = 300

local function task_event(task, previous, now)
  if events_channel == nil then
    events_channel = false
    -- (read with the request key when the script prefetches it: lib/01_common.lua)
    local watched = PREFETCH and PREFETCH[TK.events_watch]
    if watched == nil then watched = redis.call('EXISTS', TK.events_watch) == 1 end
    if watched then
      events_channel = string.match(TK.tasks, '^{([^:}]+)') .. ':events'
    end
  end
  if not events_channel then return end
  local status = task.status
  local event = (previous == '' or previous == nil) and 'task.submitted'
    or EVENT_OF[status] or ('task.' .. status)
  local p = {task = task.id, handler = task.handler, status = status, from = previous or '',
             swarm = task.swarm or '', worker = task.worker or '', attempt = task.attempts or 0}
  if status == 'completed' or status == 'failed' or status == 'dead' then
    local started = tonumber(task.started_ms) or 0
    if started > 0 then p.run_ms = now - started end
  end
  if status ~= 'completed' and (task.reason or '') ~= '' then
    p.reason = string.sub(task.reason, 1, EVENT_TEXT_MAX)
  end
  if (status == 'failed' or status == 'dead') and (task.error or '') ~= '' then
    -- a traceback's last line names the exception; the record keeps the whole text
    local last = string.match(task.error, '([^\n]+)\n*$') or task.error
    p.error = string.sub(last, 1, EVENT_TEXT_MAX)
  end
  redis.call('PUBLISH', events_channel, cjson.encode({
    type = event, sender = 'redis', payload = p, ts_ms = now, v = 1,
    id = task.id .. '.' .. status .. '.' .. (task.attempts or 0) .. '.' .. now}))
end

-- Callers change a task's status before they clear its worker: the running-by-worker index
-- is kept here, from task.worker.
local function set_task_status(task, status, now)
  if task.status ~= status then
    local previous = task.status
    if INDEXED_STATUS[previous] then redis.call('ZREM', TASK_STATUS_KEY[previous], task.id) end
    if previous == 'running' then
      redis.call('ZREM', TK.running_by_worker, task.worker .. '|' .. task.id)
    elseif status == 'running' then
      redis.call('ZADD', TK.running_by_worker, '0', task.worker .. '|' .. task.id)
    end
    task.status = status
    task_event(task, previous, now)
  end
  if INDEXED_STATUS[status] then
    redis.call('ZADD', TASK_STATUS_KEY[status], ms_text(now), task.id)
  end
end

-- A ready task's score (priority, then submission order) as text: a number handed to
-- redis.call is formatted with '%.17g' (~2.4 K instructions, decision 57); '%d' takes the
-- integer path (the score is an integer < 2^53).
local function ready_score_text(task)
  return string.format('%d', task.prio * PRIORITY_SPAN + task.seq)
end

local function make_ready(task, now)
  set_task_status(task, 'ready', now)
  task.swarm, task.worker, task.agent, task.token = '', '', '', ''
  task.lease_until = 0
  redis.call('ZADD', TK.ready, ready_score_text(task), task.id)
end

-- Leaving 'assigned' or 'running' frees a slot of the swarm that held the task (at end_batch
-- while batching).
local function release_swarm_slot(task)
  if (task.status == 'assigned' or task.status == 'running') and task.swarm ~= '' then
    local sid = task.swarm
    if not batch then
      swarm_slot_change(TK.swarms, sid, -1)  -- lib/01b_swarm_index.lua
    elseif batch.slots[sid] then
      batch.slots[sid] = batch.slots[sid] + 1
    else
      batch.slots[sid], batch.slot_order[#batch.slot_order + 1] = 1, sid
    end
  end
end

-- Take the task out of the queue its status puts it in (called before the status changes): a
-- ready one out of the ready zset and of the parked zsets of its capability set (with and
-- without its handler: dispatch_tasks.lua park), a failed one out of delayed, an assigned or
-- running one out of leases (decision 61: the ready and leases zsets are what lists and counts
-- those statuses, so they hold no ended task), and an assigned one out of its swarm's queue
-- too: claim_tasks.lua drops entries whose task moved on as it meets them, but a swarm whose
-- host beats and never claims met none, and its queue kept every task requeued or cancelled
-- from it (decision 118).
local function unqueue(task)
  local status = task.status
  if status == 'assigned' or status == 'running' then
    redis.call('ZREM', TK.leases, task.id)
    if status == 'assigned' and task.swarm ~= '' then
      redis.call('ZREM', swarm_queue_key(TK.swarms, task.swarm), task.id)
    end
  elseif status == 'failed' then
    redis.call('ZREM', TK.delayed, task.id)
  elseif status == 'ready' then
    redis.call('ZREM', TK.ready, task.id)
    local caps = split(task.caps)
    table.sort(caps)
    local parked = string.match(TK.tasks, '^({[^}]*})') .. ':tasks:parked:[' .. join(caps)
    redis.call('ZREM', parked .. ']', task.id)
    redis.call('ZREM', parked .. '|' .. task.handler .. ']', task.id)
  elseif status ~= 'pending' and not TERMINAL[status] then
    redis.call('ZREM', TK.ready, task.id)
    redis.call('ZREM', TK.delayed, task.id)
    redis.call('ZREM', TK.leases, task.id)
  end
end

local drain_waiting

-- Whether the legacy dependents hash exists (read once per call: no current version writes it)
local function legacy_dependents()
  if legacy_state == nil then legacy_state = redis.call('EXISTS', TK.dependents) == 1 end
  return legacy_state
end

-- Task `id` ended `outcome`: queue its waiting tasks for release (or cancellation) and handle
-- what this call's budget allows. Most tasks have none: at most two reads, nothing queued;
-- none at all while the waiting zset and the legacy hash do not exist (read once per call:
-- only submit_tasks adds '<dep>|<task>' edges, and it ends no task).
local function queue_waiting(outcome, id, now)
  if waiting_state == nil and legacy_state == nil
      and redis.call('EXISTS', TK.waiting, TK.dependents) == 0 then
    waiting_state, legacy_state = false, false  -- (the usual case: one EXISTS for both)
  end
  if waiting_state == nil then waiting_state = redis.call('EXISTS', TK.waiting) == 1 end
  local edge = waiting_state and redis.call('ZRANGEBYLEX', TK.waiting, '[' .. id .. '|',
                                            '[' .. id .. '|\255', 'LIMIT', '0', '1') or {}
  if #edge == 0 and not (legacy_dependents() and redis.call('HEXISTS', TK.dependents, id) == 1)
  then
    return
  end
  if before_drain then before_drain() end
  redis.call('ZADD', TK.waiting, '0', '!' .. outcome .. '|' .. id)
  waiting_state, dependents_queued = true, true
  drain_waiting(now)
end

local function end_task(task, status, reason, now)
  release_swarm_slot(task)
  unqueue(task)
  task.reason = reason
  task.lease_until = 0
  set_task_status(task, status, now)
  put_task(task, now)
  stat_add(status, 1)
  if status == 'dead' then
    redis.call('XADD', TK.dlq, 'MAXLEN', '~', DLQ_MAXLEN, '*', 'task', task.id,
               'reason', reason, 'error', task.error or '', 'attempts', task.attempts)
  end
  -- its dependents can never run: they end cancelled with that reason (transitively)
  queue_waiting(status, task.id, now)
end

-- Dependents are released (or cancelled) in bounded steps. TK.waiting holds '<dep>|<task>' for
-- each task still waiting on dep, and '!<outcome>|<dep>' for each ended dep whose waiting
-- tasks are still to be handled ('!' sorts before every id character). A script call handles
-- at most WAITING_BUDGET waiting tasks, whatever its number of outcomes; what is left stays
-- queued and the leader's next dispatch call goes on (dispatch_tasks.lua), so 40,000 dependents
-- of one task never hold Redis in one script (decision 41).

-- One waiting task of a dep that ended `outcome`: nil, or the outcome to cascade from it.
local function settle_waiting(dep_id, outcome, current, now)
  local dep = get_task(dep_id)
  if not dep then return nil end
  if outcome == 'completed' then
    if dep.status ~= 'pending' then return nil end
    dep.deps_left = dep.deps_left - 1
    if dep.deps_left <= 0 then
      dep.deps_left = 0
      dep.reason = ''
      make_ready(dep, now)
    end
    put_task(dep, now)
    return nil
  end
  if TERMINAL[dep.status] then return nil end
  release_swarm_slot(dep)
  unqueue(dep)
  dep.reason = 'dependency ' .. current .. ' ' .. outcome
  dep.lease_until = 0
  set_task_status(dep, 'cancelled', now)
  put_task(dep, now)
  stat_add('cancelled', 1)
  return 'cancelled'
end

-- Handle queued outcomes within this call's budget; true when some are left for a later call,
-- and as second value true when it handled some (wrote).
drain_waiting = function(now)
  local handled = false
  while true do
    local head = redis.call('ZRANGEBYLEX', TK.waiting, '[!', '[!\255', 'LIMIT', '0', '1')[1]
    if not head then return false, handled end
    if waiting_budget <= 0 then return true, handled end
    handled = true
    local outcome, current = string.match(head, '^!(%a+)|(.+)$')
    -- a list written before this index (a comma list in the dependents hash) joins it first
    local legacy = legacy_dependents() and redis.call('HGET', TK.dependents, current)
    if legacy then
      for _, dep_id in ipairs(split(legacy)) do
        redis.call('ZADD', TK.waiting, '0', current .. '|' .. dep_id)
      end
      redis.call('HDEL', TK.dependents, current)
    end
    local prefix = current .. '|'
    local edges = redis.call('ZRANGEBYLEX', TK.waiting, '[' .. prefix, '[' .. prefix .. '\255',
                             'LIMIT', 0, waiting_budget)
    for _, edge in ipairs(edges) do
      waiting_budget = waiting_budget - 1
      redis.call('ZREM', TK.waiting, edge)
      local dep_id = string.sub(edge, #prefix + 1)
      local next_outcome = settle_waiting(dep_id, outcome, current, now)
      if next_outcome then
        redis.call('ZADD', TK.waiting, '0', '!' .. next_outcome .. '|' .. dep_id)
      end
    end
    if waiting_budget > 0 then redis.call('ZREM', TK.waiting, head) end
  end
end

-- A dependency completed: its waiting tasks with nothing else to wait for become ready.
local function release_dependents(id, now)
  queue_waiting('completed', id, now)
end

-- An assigned task its swarm will not claim (the swarm finished, lost its hosts, or the
-- assignment deadline passed): ready again for any swarm, attempt not counted (it never ran).
local function requeue_assigned(task, reason, now)
  release_swarm_slot(task)
  unqueue(task)
  task.reason = reason
  make_ready(task, now)
  put_task(task, now)
end

-- A running task handed back unrun (clean worker shutdown): ready again, attempt not counted.
local function hand_back(task, now)
  release_swarm_slot(task)
  unqueue(task)
  task.attempts = math.max(0, task.attempts - 1)
  task.reason = 'released by ' .. task.worker
  make_ready(task, now)
  put_task(task, now)
end

-- A failed attempt (handler error, timeout, expired lease): retry after exponential backoff
-- base * 2^(attempts-1), capped, scaled by the caller's jitter factor; dead after max_attempts.
local function fail_attempt(task, err, permanent, jitter, now)
  task.error = err
  if permanent or task.attempts >= task.max_attempts then
    local why = permanent and 'permanent failure' or ('failed ' .. task.attempts .. ' attempts')
    end_task(task, 'dead', why, now)
    return 'dead'
  end
  release_swarm_slot(task)
  unqueue(task)
  local delay = math.min(task.backoff_ms * (2 ^ (task.attempts - 1)), task.backoff_max_ms)
  delay = math.floor(delay * (jitter or 1))
  task.due_ms = now + delay
  task.reason = 'retry in ' .. delay .. ' ms'
  set_task_status(task, 'failed', now)
  task.swarm, task.worker, task.agent, task.token, task.lease_until = '', '', '', '', 0
  redis.call('ZADD', TK.delayed, task.due_ms, task.id)
  put_task(task, now)
  stat_add('retries', 1)
  return 'retry'
end

-- The dependencies (csv) of task `id`'s record; '' when it has none or none is readable.
local function record_deps(id)
  local raw = redis.call('HGET', TK.tasks, id)
  if not raw then return '' end
  if string.byte(raw, 1) == JSON_OPEN then return string.match(raw, '"deps":"([^"]*)"') or '' end
  local ok, task = pcall(decode_task, raw)
  return ok and type(task) == 'table' and type(task.deps) == 'string' and task.deps or ''
end

-- Forget a finished task: record, payload, result, its dependents and readers fields, its own
-- edges as a reader of its dependencies (`deps`, csv; nil: read from its record) and its entry
-- in the index of `status` (every terminal index when the record was unreadable). Used by the
-- retention sweep (prune_tasks.lua) and the operator's purge (purge_tasks.lua). (Its reader
-- edges go here, not when it ends: a dead task retried reads its dependencies again.)
local function forget_task(id, status, deps)
  for _, d in ipairs(split(deps or record_deps(id))) do
    redis.call('ZREM', TK.readers, d .. '|' .. id)
  end
  redis.call('HDEL', TK.tasks, id)
  redis.call('HDEL', TK.payload, id)
  redis.call('HDEL', TK.result, id)
  redis.call('HDEL', TK.dependents, id, 'r:' .. id)
  -- readers still listed (normally none: the prune sweep drops them as they end)
  redis.call('ZREMRANGEBYLEX', TK.readers, '[' .. id .. '|', '[' .. id .. '|\255')
  -- (ready, delayed and leases were left when the task ended: the end paths above)
  if status then
    redis.call('ZREM', TASK_STATUS_KEY[status], id)
  else
    for s in pairs(TERMINAL) do redis.call('ZREM', TASK_STATUS_KEY[s], id) end
  end
end

-- True when task `id` exists and has not finished (it may still read its dependencies' results).
local function task_unfinished(id)
  if redis.call('HEXISTS', TK.tasks, id) == 0 then return false end
  for s in pairs(TERMINAL) do
    if redis.call('ZSCORE', TASK_STATUS_KEY[s], id) then return false end
  end
  return true
end

-- The readers of task `id`'s result ('<id>|<reader>' in TK.readers, submit_tasks.lua): look at
-- up to `limit` of them, dropping those that ended or are gone. Returns 'live' (one is
-- unfinished), 'none' (none is left) or 'more' (the limit ran out first), and how many it
-- looked at. A comma list written by an earlier version ('r:<id>' in the dependents hash)
-- joins the zset first.
local function readers_state(id, limit)
  local legacy = redis.call('HGET', TK.dependents, 'r:' .. id)
  if legacy then
    for _, r in ipairs(split(legacy)) do redis.call('ZADD', TK.readers, 0, id .. '|' .. r) end
    redis.call('HDEL', TK.dependents, 'r:' .. id)
  end
  local prefix = id .. '|'
  local rows = redis.call('ZRANGEBYLEX', TK.readers, '[' .. prefix, '[' .. prefix .. '\255',
                          'LIMIT', 0, limit)
  for i, row in ipairs(rows) do
    if task_unfinished(string.sub(row, #prefix + 1)) then return 'live', i end
    redis.call('ZREM', TK.readers, row)
  end
  if #rows < limit then return 'none', #rows end
  return 'more', #rows
end
