-- prune_tasks: forget finished tasks whose result retention has passed, in one bounded call.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- KEYS[27]    - retained ({ns}:tasks:retained): zset finished task id -> ms when it is looked at
--               again; holds the tasks the sweep found not yet due (their own result TTL is
--               longer than the sweep horizon) or still needed (a task that depends on it has
--               not ended and will read its result)
-- KEYS[28]    - sweep cursor ({ns}:tasks:prune): hash terminal status -> score (finish ms) up
--               to which that status index has been examined, and 'ttl' -> ARGV[1] it was
--               read under
-- ARGV[1] - deployment result TTL in ms (MULTISWARM_RESULT_TTL_MS); a task's own
--           result_ttl_ms (submit_tasks.lua), when set, replaces it
-- ARGV[2] - budget: most index entries and dependents examined in this call, so one run stays
--           short (Redis serves nobody meanwhile); the caller repeats while `more` is 1
-- ARGV[3] - 'as of' ms returned by the first call of this round ('0' on the first call): every
--           call of a round judges against that instant, so a round's work is fixed when it
--           starts and the round ends even while tasks keep finishing or stay held
-- A task is forgotten once it has been finished (completed, dead, cancelled) for its TTL and,
-- when completed, no task that depends on it is still unfinished; then everything it owned goes:
-- record, payload, result, status index entry, dependents and readers fields, retained entry.
-- The sweep reads each terminal status index once, in finish order, from its cursor up to
-- as of - horizon (horizon = the smallest TTL in use: deployment TTL or stats
-- min_result_ttl_ms); tasks it finds not due move to `retained`, so they never block it.
-- The completions stream is trimmed to the deployment TTL as well (exact MINID), and the status
-- indexes an earlier version kept for ready, assigned and running tasks are deleted.
-- returns {pruned, more, as of}: more is 1 when the budget ran out before all that was due as of
--   `as of` was seen
local n = load_task_keys()
local retained, cursors = KEYS[n + 1], KEYS[n + 2]
local default_ttl, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
if not default_ttl or default_ttl < 1 or not budget or budget < 1 then
  return fail('BAD_REQUEST', 'ttl and budget must be positive integers')
end
-- a completed task held by an unfinished dependent is looked at again after min(its TTL, 60 s)
-- (at most once a round: a round judges as of its start)
local HOLD_RECHECK_MS = 60000
local now = now_ms()
local asof = tonumber(ARGV[3]) or 0
if asof <= 0 or asof > now then asof = now end
-- the ready, assigned and running indexes are no longer kept (decision 61): what an earlier
-- version left there goes (still passed, KEYS[20..22]; DEL of a missing key costs nothing;
-- DEL, not UNLINK, which deploy/acl.conf's least-privilege user may not call)
redis.call('DEL', TASK_STATUS_KEY.ready, TASK_STATUS_KEY.assigned, TASK_STATUS_KEY.running)
local pruned = 0
local more = false  -- a page came back full: there may be more than this call saw

local function forget(id, status, deps)
  forget_task(id, status, deps)
  redis.call('ZREM', retained, id)
  pruned = pruned + 1
end

-- Readers of a completed task (lib/02_tasks.lua readers_state): ended or forgotten ones are
-- dropped as they are found, within the budget. Returns nil when none is unfinished, else the ms
-- to look at the task again.
local function held_until(id, ttl)
  local state, looked = readers_state(id, math.max(1, budget))
  budget = budget - looked
  if state == 'live' then return now + math.min(ttl, HOLD_RECHECK_MS) end
  if state == 'more' then return asof end  -- out of budget: due again within this round
  return nil
end

-- The four fields pruning needs. A JSON record (written before decision 64) is read off its
-- text without decoding all of it (the decode is most of the cost per task). Safe: inside a
-- JSON string every '"' is escaped, so '"status":"' can only match the real key; falls back to
-- a full decode if one is absent. A MessagePack record is decoded (cmsgpack is cheap).
local function task_fields(id)
  local raw = redis.call('HGET', TK.tasks, id)
  if not raw then return nil end
  if string.byte(raw, 1) ~= JSON_OPEN then return decode_task(raw) end
  local status = string.match(raw, '"status":"(%a+)"')
  local updated = tonumber(string.match(raw, '"updated_ms":(%d+)'))
  local ttl = tonumber(string.match(raw, '"result_ttl_ms":(%d+)') or '0')
  if status and updated then
    local deps = string.match(raw, '"deps":"([^"]*)"') or ''
    return {status = status, updated_ms = updated, result_ttl_ms = ttl, deps = deps}
  end
  return decode_task(raw)
end

-- Decide about one finished task found in the index of `status` (nil: found in retained).
local function settle(id, status)
  local task = task_fields(id)
  if not task then
    forget(id, status, '')
    return false
  end
  if not TERMINAL[task.status] or (status and task.status ~= status) then
    -- not finished (any more): not ours to forget; drop whichever entry is stale
    redis.call('ZREM', retained, id)
    if status then redis.call('ZREM', TASK_STATUS_KEY[status], id) end
    return false
  end
  local ttl = tonumber(task.result_ttl_ms) or 0
  if ttl <= 0 then ttl = default_ttl end
  local due = (tonumber(task.updated_ms) or 0) + ttl
  if due <= asof and task.status == 'completed' then
    local again = held_until(id, ttl)
    if again then
      redis.call('ZADD', retained, string.format('%d', again), id)
      return true
    end
  elseif due > asof then
    redis.call('ZADD', retained, string.format('%d', due), id)
    return true
  end
  forget(id, task.status, type(task.deps) == 'string' and task.deps or '')
  return false
end

-- 1. retained tasks whose time has come
local due_now = redis.call('ZRANGEBYSCORE', retained, '-inf', string.format('%d', asof),
                          'LIMIT', 0, budget)
more = #due_now >= budget
for _, id in ipairs(due_now) do
  budget = budget - 1
  redis.call('ZREM', retained, id)
  settle(id, nil)
end

-- 2. the sweep: terminal status indexes from their cursor up to as of - horizon
local horizon = default_ttl
local min_ttl = tonumber(redis.call('HGET', TK.stats, 'min_result_ttl_ms') or '')
if min_ttl and min_ttl > 0 and min_ttl < horizon then horizon = min_ttl end
local cutoff = asof - horizon
-- Deadlines in `retained` were reckoned with the deployment TTL the cursor was read under: when
-- that changes (a restart with another MULTISWARM_RESULT_TTL_MS), sweep again from the start
-- so every finished task is judged, and re-filed, under the new one.
if redis.call('HGET', cursors, 'ttl') ~= ARGV[1] then
  redis.call('DEL', cursors)
  redis.call('HSET', cursors, 'ttl', ARGV[1])
end
for _, status in ipairs({'completed', 'dead', 'cancelled'}) do
  if budget <= 0 then break end
  local key = TASK_STATUS_KEY[status]
  local from = tonumber(redis.call('HGET', cursors, status) or '')
  -- New entries carry the server's current time, above the cutoff, so nothing lands behind the
  -- cursor; a cursor ahead of the cutoff means the clock stepped back (a fail-over to a server
  -- with a slower clock): start over so nothing finished meanwhile is missed.
  if not from or from > cutoff then from = nil end
  local lo = from and ('(' .. string.format('%d', from)) or '-inf'
  local rows = redis.call('ZRANGEBYSCORE', key, lo, string.format('%d', cutoff), 'WITHSCORES',
                          'LIMIT', 0, budget)
  local n = #rows / 2
  if n > 0 then
    local last = tonumber(rows[2 * n])
    if n == budget then
      more = true
      if tonumber(rows[2]) == last then
        -- one finish ms fills the page: take all of that ms (the cursor is a score, so a page
        -- must not end inside one); bounded by what one script finished in that ms
        rows = redis.call('ZRANGEBYSCORE', key, rows[2], rows[2], 'WITHSCORES')
        n = #rows / 2
      else
        -- leave the last ms for the next call, whole
        while tonumber(rows[2 * n]) == last do n = n - 1 end
        last = tonumber(rows[2 * n])
      end
    end
    for i = 1, n do
      budget = budget - 1
      settle(rows[2 * i - 1], status)
    end
    redis.call('HSET', cursors, status, string.format('%d', last))
  end
end

if asof > default_ttl then
  redis.call('XTRIM', TK.completions, 'MINID', string.format('%d', asof - default_ttl))
end
return {pruned, (more or budget <= 0) and 1 or 0, string.format('%d', asof)}
