-- submit_tasks: add a batch of tasks with their dependencies, all or nothing.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- ARGV[1] - number of tasks N
-- ARGV[2i], ARGV[2i+1] for i = 1..N - task spec JSON {id, name, handler, caps (csv), prio
--           (0 high, 1 normal, 2 low), max_attempts, lease_ms, timeout_ms, backoff_ms,
--           backoff_max_ms, deps (csv), result_ttl_ms (0: the deployment's)}, and the opaque
--           payload bytes
-- A new task waiting on a dependency is an entry '<dep>|<task>' of the waiting zset (released in
-- bounded steps when dep ends: lib/02_tasks.lua drain_waiting).
-- Each new task is an entry '<dep>|<task>' of the readers zset for every dependency: the
-- readers of that dependency's result, which prune_tasks.lua keeps while one of them is
-- unfinished. A
-- result_ttl_ms below stats 'min_result_ttl_ms' lowers it (the prune sweep's horizon).
-- Dependencies must already exist or come earlier in the batch, so the graph is acyclic.
-- Wakes the partition's leader when a task is ready (lib/01_common.lua wake).
-- returns per task 'pending' | 'ready' | 'cancelled' | 'exists' (same definition submitted
--   before: idempotent); errors BAD_REQUEST, ALREADY_EXISTS, UNKNOWN_DEPENDENCY write nothing
load_task_keys()
local count = tonumber(ARGV[1])
if not count or #ARGV ~= 1 + 2 * count then return fail('BAD_REQUEST', 'argument count') end
local specs, in_batch, ids = {}, {}, {}
for i = 1, count do
  local ok, spec = pcall(cjson.decode, ARGV[2 * i])
  if not ok or type(spec) ~= 'table' or type(spec.id) ~= 'string' then
    return fail('BAD_REQUEST', 'task #' .. i .. ' is not a task spec')
  end
  specs[i], ids[i] = spec, spec.id
end
-- the existence check of the whole batch is one HMGET (chunked), not one HGET per task
local raws = count > 0 and hmget_list(TK.tasks, ids) or {}
for i = 1, count do
  local spec = specs[i]
  local existing = raws[i] and decode_task(raws[i])
  if existing then
    if existing.handler ~= spec.handler or existing.deps ~= spec.deps then
      return fail('ALREADY_EXISTS', 'task ' .. spec.id .. ' exists with another definition')
    end
    spec.exists = true
  elseif in_batch[spec.id] then
    return fail('ALREADY_EXISTS', 'task ' .. spec.id .. ' twice in one batch')
  end
  for _, d in ipairs(split(spec.deps)) do
    if d == spec.id then return fail('BAD_REQUEST', 'task ' .. d .. ' depends on itself') end
    if not in_batch[d] and redis.call('HEXISTS', TK.tasks, d) == 0 then
      return fail('UNKNOWN_DEPENDENCY', 'task ' .. spec.id .. ' depends on unknown task ' .. d)
    end
  end
  in_batch[spec.id] = true
end

local now = now_ms()
local out = {}
local any_ready = false
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
for _, spec in ipairs(specs) do
  if not spec.exists then fresh = fresh + 1 end
end
-- the payloads of the new tasks are one variadic HSET (chunked) after the loop
local payloads, records, ready = {}, {}, {}
local seq = fresh > 0 and redis.call('HINCRBY', TK.stats, 'seq', fresh) - fresh or 0
for i, spec in ipairs(specs) do
  if spec.exists then
    out[i] = 'exists'
  else
    -- built sparse (decision 79): only fields off their TASK_DEFAULTS, so pack_sparse skips
    -- pack_task's 18-field loop; nothing below sets a default-valued field
    local task = setmetatable({
      id = spec.id, handler = spec.handler, prio = spec.prio, status = '',
      max_attempts = spec.max_attempts, lease_ms = spec.lease_ms, timeout_ms = spec.timeout_ms,
      backoff_ms = spec.backoff_ms, backoff_max_ms = spec.backoff_max_ms,
      seq = seq + 1, created_ms = now, updated_ms = now,
    }, TASK_MT_SPARSE)
    if spec.name and spec.name ~= '' then task.name = spec.name end
    if spec.caps and spec.caps ~= '' then task.caps = spec.caps end
    if spec.deps and spec.deps ~= '' then task.deps = spec.deps end
    local ttl = tonumber(spec.result_ttl_ms) or 0
    if ttl > 0 then task.result_ttl_ms = ttl end
    if task.result_ttl_ms > 0 then
      local floor = tonumber(redis.call('HGET', TK.stats, 'min_result_ttl_ms') or '')
      if not floor or task.result_ttl_ms < floor then
        redis.call('HSET', TK.stats, 'min_result_ttl_ms', string.format('%d', task.result_ttl_ms))
      end
    end
    seq = task.seq
    payloads[#payloads + 1] = spec.id
    payloads[#payloads + 1] = ARGV[2 * i + 1]
    local ended_dep = nil
    local deps = split(task.deps)
    for _, d in ipairs(deps) do
      local status = dep_status(d)
      if status == 'dead' or status == 'cancelled' then
        ended_dep = ended_dep or (d .. ' ' .. status)
      end
    end
    if ended_dep then
      task.reason = 'dependency ' .. ended_dep
      set_task_status(task, 'cancelled', now)
      stat_add('cancelled', 1)
    else
      local left = 0
      for _, d in ipairs(deps) do
        redis.call('ZADD', TK.readers, '0', d .. '|' .. task.id)  -- O(log n), not a rewrite
        if dep_status(d) ~= 'completed' then
          left = left + 1
          redis.call('ZADD', TK.waiting, '0', d .. '|' .. task.id)  -- O(log n), not a rewrite
        end
      end
      if left > 0 then
        task.deps_left = left
        set_task_status(task, 'pending', now)
      else
        -- make_ready's body without its resets of fields a new task never set
        set_task_status(task, 'ready', now)
        ready[#ready + 1] = ready_score_text(task)
        ready[#ready + 1] = task.id
      end
    end
    records[#records + 1] = task.id
    records[#records + 1] = pack_sparse(task, now)
    known[task.id] = task.status
    out[i] = task.status
    if task.status == 'ready' then any_ready = true end
  end
end
if #payloads > 0 then
  call_chunked('HSET', TK.payload, payloads)
  call_chunked('HSET', TK.tasks, records)
end
if #ready > 0 then call_chunked('ZADD', TK.ready, ready) end
if fresh > 0 then stat_add('submitted', fresh) end
-- the leader dispatches at once (multiswarm/wakeups.py); its 2 s round is only the safety net
if any_ready then wake(TK.tasks, 'leader') end
return out
