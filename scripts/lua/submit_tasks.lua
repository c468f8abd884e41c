-- submit_tasks: add a batch of tasks with their dependencies, all or nothing.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- ARGV[1] - number of tasks N
-- ARGV[2i], ARGV[2i+1] for i = 1..N - task spec and the opaque payload bytes. The spec is a
--           MessagePack map (multiswarm/messages.py encode_task_spec): id, handler, prio (0 high,
--           1 normal, 2 low), max_attempts, lease_ms, timeout_ms, backoff_ms, backoff_max_ms,
--           and name, caps (csv), deps (csv), result_ttl_ms (0: the deployment's) only when not
--           '' or 0; or, from an older client, a JSON object of the same fields (first byte '{')
-- A new task waiting on a dependency is an entry '<dep>|<task>' of the waiting zset (released in
-- bounded steps when dep ends: lib/02_tasks.lua drain_waiting).
-- Each new task is an entry '<dep>|<task>' of the readers zset for every dependency: the
-- readers of that dependency's result, which prune_tasks.lua keeps while one of them is
-- unfinished. A result_ttl_ms below stats 'min_result_ttl_ms' lowers it (the prune sweep's
-- horizon).
-- Dependencies must already exist or come earlier in the batch, so the graph is acyclic.
-- Wakes the partition's leader when a task is ready (lib/01_common.lua wake).
-- returns per task 'pending' | 'ready' | 'cancelled' | 'exists' (same definition submitted
--   before: idempotent), then the id of the completions stream's last entry ('0-0': none): a
--   waiter for these tasks reads that stream from there (decision 96); errors BAD_REQUEST,
--   ALREADY_EXISTS, UNKNOWN_DEPENDENCY write nothing
load_task_keys()
local count = tonumber(ARGV[1])
if not count or #ARGV ~= 1 + 2 * count then return fail('BAD_REQUEST', 'argument count') end

-- A JSON spec (older clients) as the fields a MessagePack one has: its table and that table
-- packed (the pairs the new record starts with). Its settings are checked below, as a
-- MessagePack one's.
local function from_json(raw)
  local ok, spec = pcall(cjson.decode, raw)
  if not ok or type(spec) ~= 'table' then return nil end
  local s = {
    id = spec.id, handler = spec.handler, prio = spec.prio, max_attempts = spec.max_attempts,
    lease_ms = spec.lease_ms, timeout_ms = spec.timeout_ms, backoff_ms = spec.backoff_ms,
    backoff_max_ms = spec.backoff_max_ms,
  }
  if spec.name and spec.name ~= '' then s.name = spec.name end
  if spec.caps and spec.caps ~= '' then s.caps = spec.caps end
  if spec.deps and spec.deps ~= '' then s.deps = spec.deps end
  local ttl = tonumber(spec.result_ttl_ms) or 0
  if ttl > 0 then s.result_ttl_ms = ttl end
  return s, cmsgpack.pack(s)
end

local SETTINGS = {'prio', 'max_attempts', 'lease_ms', 'timeout_ms', 'backoff_ms',
                  'backoff_max_ms'}
-- specs[i]: the decoded spec; packed[i]: its MessagePack map (the new record's first pairs);
-- pairs[i]: how many pairs that map holds
local specs, packed, pairs_of, in_batch, ids = {}, {}, {}, {}, {}
for i = 1, count do
  local raw = ARGV[2 * i]
  local head = string.byte(raw, 1)
  local s
  if head == 123 then
    s, raw = from_json(raw)
    if raw then head = string.byte(raw, 1) end
  elseif head and head >= 0x80 and head <= 0x8f then
    -- a fixmap (a spec has at most 12 entries); unpack_one's -1: nothing follows it
    local ok, rest, t = pcall(cmsgpack.unpack_one, raw)
    if ok and rest == -1 then
      s = t
      -- only the spec's fields, each once, the 8 settings present: the map's pairs become the
      -- record's as they are, so no other key may come through (the refusal writes nothing)
      local fields = 8 + (t.name and 1 or 0) + (t.caps and 1 or 0) + (t.deps and 1 or 0)
        + (t.result_ttl_ms and 1 or 0)
      if head - 0x80 ~= fields or not (t.prio and t.max_attempts and t.lease_ms and t.timeout_ms
          and t.backoff_ms and t.backoff_max_ms) then
        return fail('BAD_REQUEST', 'task #' .. i .. ' is not a task spec (unknown, repeated or '
          .. 'missing field)')
      end
    end
  end
  if not s or type(s.id) ~= 'string' or type(s.handler) ~= 'string' then
    return fail('BAD_REQUEST', 'task #' .. i .. ' is not a task spec')
  end
  -- every setting a number: one missing or of another type would fail the script that next
  -- uses it (a pending task's priority, read when its dependencies release it), again at every
  -- retry of that script (multiswarm/messages.py check_settings bounds them client-side)
  for k = 1, #SETTINGS do
    if type(s[SETTINGS[k]]) ~= 'number' then
      return fail('BAD_REQUEST', 'task #' .. i .. ' has no number ' .. SETTINGS[k])
    end
  end
  specs[i], packed[i], pairs_of[i], ids[i] = s, raw, head - 0x80, s.id
end
-- the existence check of the whole batch is one HMGET (chunked), not one HGET per task
local raws = count > 0 and hmget_list(TK.tasks, ids) or {}
-- exists[i]: task i was submitted before; deps_of[i]: its dependency list (nil: none); present:
-- the dependencies from before this call found so far (one HEXISTS each, however many tasks
-- of the batch name them)
local exists, deps_of, present = {}, {}, {}
for i = 1, count do
  local s = specs[i]
  local existing = raws[i] and decode_task(raws[i])
  if existing then
    if existing.handler ~= s.handler or existing.deps ~= (s.deps or '') then
      return fail('ALREADY_EXISTS', 'task ' .. s.id .. ' exists with another definition')
    end
    exists[i] = true
  elseif in_batch[s.id] then
    return fail('ALREADY_EXISTS', 'task ' .. s.id .. ' twice in one batch')
  end
  if s.deps then
    local deps = split(s.deps)
    -- a dependency named twice would count twice in deps_left but have one edge to release it
    -- (a task pending for good): refused (task_spec names each once)
    local named = {}
    for _, d in ipairs(deps) do
      if d == s.id then return fail('BAD_REQUEST', 'task ' .. d .. ' depends on itself') end
      if named[d] then
        return fail('BAD_REQUEST', 'task ' .. s.id .. ' names dependency ' .. d .. ' twice')
      end
      named[d] = true
      if not in_batch[d] and not present[d] then
        if redis.call('HEXISTS', TK.tasks, d) == 0 then
          return fail('UNKNOWN_DEPENDENCY', 'task ' .. s.id .. ' depends on unknown task ' .. d)
        end
        present[d] = true
      end
    end
    deps_of[i] = deps
  end
  in_batch[s.id] = true
end

local now = now_ms()
local out = {}
-- A dependency submitted before this call cannot change status during it: its status is read
-- (decoded) once, however many tasks of the batch depend on it (a fan-out of 500 per call).
-- One earlier in the batch has the status this call gave it (or its record's, when it existed).
local known = {}
local function dep_status(d)
  if not known[d] then known[d] = get_task(d).status end
  return known[d]
end
-- the new tasks' seq numbers are taken as one block, in batch order, and counted once (decision
-- 50)
local fresh = 0
for i = 1, count do
  if not exists[i] then fresh = fresh + 1 end
end
local seq = fresh > 0 and redis.call('HINCRBY', TK.stats, 'seq', fresh) - fresh or 0
-- A new record is the spec's pairs as they came, then the fields submit sets, packed here
-- (decision 84): no table to build and pack per task. Sparse (decision 57) as the spec leaves
-- out name, caps, deps and result_ttl_ms at '' or 0, and deps_left and reason are added only
-- when set. The keys are constant MessagePack strings (0xa0 + length, then the text); the two
-- time stamps are the same for every task of the call.
local stamp = cmsgpack.pack(now)
local tail = '\170created_ms' .. stamp .. '\170updated_ms' .. stamp .. '\163seq'
local STATUS_PAIR = {ready = '\166status\165ready', pending = '\166status\167pending',
                     cancelled = '\166status\169cancelled'}
local now_text = ms_text(now)
-- whether someone listens to task events (lib task_event reads it too): the spec tables stay
-- as unpacked (no key added: a rehash) while nobody does
local watched = redis.call('EXISTS', TK.events_watch) == 1
-- everything is written after the loop, each key in one variadic command (call_chunked):
-- nothing in the loop reads what it writes but the batch's statuses (known)
local payloads, records, ready, readers, waiting = {}, {}, {}, {}, {}
local indexed = {pending = {}, cancelled = {}}
local any_ready, cancelled, min_ttl = false, 0, nil
for i = 1, count do
  local s = specs[i]
  local id = s.id
  if exists[i] then
    out[i] = 'exists'
  else
    seq = seq + 1
    local status, extra, entries, reason = 'ready', '', 4, nil
    local ttl = s.result_ttl_ms
    if ttl and ttl > 0 and (not min_ttl or ttl < min_ttl) then min_ttl = ttl end
    payloads[#payloads + 1] = id
    payloads[#payloads + 1] = ARGV[2 * i + 1]
    local deps = deps_of[i]
    if deps then
      local ended_dep = nil
      for _, d in ipairs(deps) do
        local st = dep_status(d)
        if st == 'dead' or st == 'cancelled' then ended_dep = ended_dep or (d .. ' ' .. st) end
      end
      if ended_dep then
        status = 'cancelled'
        reason = 'dependency ' .. ended_dep
        extra, entries = '\166reason' .. cmsgpack.pack(reason), 5
        cancelled = cancelled + 1
      else
        local left = 0
        for _, d in ipairs(deps) do
          local edge = d .. '|' .. id
          readers[#readers + 1] = '0'
          readers[#readers + 1] = edge
          if dep_status(d) ~= 'completed' then
            left = left + 1
            waiting[#waiting + 1] = '0'
            waiting[#waiting + 1] = edge
          end
        end
        if left > 0 then
          status = 'pending'
          extra, entries = '\169deps_left' .. cmsgpack.pack(left), 5
        end
      end
    end
    -- set_task_status's work for a new task (no previous status or index), its index ZADD
    -- batched
    if watched then
      s.status, s.reason = status, reason
      task_event(s, '', now)
    end
    if status == 'ready' then
      ready[#ready + 1] = string.format('%d', s.prio * PRIORITY_SPAN + seq)
      ready[#ready + 1] = id
      any_ready = true
    else
      local index = indexed[status]
      index[#index + 1] = now_text
      index[#index + 1] = id
    end
    -- the map's header counts the spec's pairs and these (a fixmap up to 15, then map 16)
    local n = pairs_of[i] + entries
    local header = n < 16 and string.char(0x80 + n) or string.char(0xde, 0, n)
    records[#records + 1] = id
    records[#records + 1] = header .. string.sub(packed[i], 2) .. STATUS_PAIR[status] .. extra
      .. tail .. cmsgpack.pack(seq)
    known[id] = status
    out[i] = status
  end
end
if #payloads > 0 then
  call_chunked('HSET', TK.payload, payloads)
  call_chunked('HSET', TK.tasks, records)
end
if #ready > 0 then call_chunked('ZADD', TK.ready, ready) end
if #indexed.pending > 0 then call_chunked('ZADD', TASK_STATUS_KEY.pending, indexed.pending) end
if #indexed.cancelled > 0 then
  call_chunked('ZADD', TASK_STATUS_KEY.cancelled, indexed.cancelled)
end
if #readers > 0 then call_chunked('ZADD', TK.readers, readers) end
if #waiting > 0 then call_chunked('ZADD', TK.waiting, waiting) end
if min_ttl then
  local floor = tonumber(redis.call('HGET', TK.stats, 'min_result_ttl_ms') or '')
  if not floor or min_ttl < floor then
    redis.call('HSET', TK.stats, 'min_result_ttl_ms', string.format('%d', min_ttl))
  end
end
if fresh > 0 then stat_add('submitted', fresh) end
if cancelled > 0 then stat_add('cancelled', cancelled) end
-- the leader dispatches at once (multiswarm/wakeups.py); its 2 s round is only the safety net
if any_ready then wake(TK.tasks, 'leader') end
local last = redis.call('XREVRANGE', TK.completions, '+', '-', 'COUNT', 1)[1]
out[#out + 1] = last and last[1] or '0-0'
return out
