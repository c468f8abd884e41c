-- finish_tasks: record the outcomes of many attempts in one call (a worker's group commit):
-- results exactly once, failures retried with backoff or dead-lettered.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- KEYS[27]     - parked index ({ns}:tasks:parked): whether tasks wait for room (the wake-up)
-- prefetch: KEYS[15]
--   (the events watch, read with the request key: lib/01_common.lua read_string)
-- ARGV[1] - worker id (named in the completions stream)
-- ARGV[2] - random seed for the backoff jitter (each delay scaled by a factor in [0.5, 1))
-- ARGV[3..] - one quadruple per attempt: task id, token of the attempt, kind, data
--   kind 'ok': data is the result bytes. The first result of any attempt wins (at-least-once
--     execution, exactly-once record), even when its lease had expired and another attempt is
--     queued or running.
--   kind 'error' | 'permanent': data is the error text; a permanent failure (bad handler,
--     undecodable payload) is not retried.
-- Wakes the partition's leader when it has work (see the end; lib/01_common.lua wake).
-- returns one outcome per quadruple, in order; a problem with one task never stops the others (a
-- script's writes are not rolled back on an error reply, so none is raised midway):
--   ok:    'completed' | 'duplicate' (already completed: nothing written) |
--          'ended:<status>' (dead or cancelled before this result: dropped)
--   error: 'retry' | 'dead' | 'stale' (the attempt no longer holds the task: nothing written)
--   both:  'not_found' | 'illegal:<status>' (a result for a task that never ran)
local parked_index = KEYS[load_task_keys() + 1]
begin_batch()  -- slot releases and counters once per swarm and counter (lib/02_tasks.lua)
local wid = ARGV[1]
math.randomseed(tonumber(ARGV[2]) or 0)
local now = now_ms()
local now_text = string.format('%d', now)

-- A completion of a running or assigned task, the usual outcome, is written with the call's
-- others after the loop: records and results in one HSET each, leases and running-by-worker
-- entries in one ZREM each, the completed index in one ZADD (decision 71: 8.7 commands a task
-- -> 3.4). The task ends completed here, so nothing later in the call writes it again.
local done_hset, done_results, done_leases, done_rbw, done_index = {}, {}, {}, {}, {}

local function complete(task, token, result)
  if task.status == 'completed' then
    stat_add('duplicate_results', 1)
    return 'duplicate'
  end
  if TERMINAL[task.status] then return 'ended:' .. task.status end
  if task.status == 'pending' then return 'illegal:pending' end
  local id = task.id
  local held = task.status == 'running' or task.status == 'assigned'
  release_swarm_slot(task)
  if held then
    done_leases[#done_leases + 1] = id
    done_results[#done_results + 1] = id
    done_results[#done_results + 1] = result
  else
    unqueue(task)
    redis.call('HSET', TK.result, id, result)
  end
  -- (nil is the default read back: pack_sparse below has no field to drop)
  task.reason, task.error, task.lease_until = nil, nil, nil
  task.completed_by, task.finished_ms = token ~= '' and token or nil, now
  if held then
    -- set_task_status(task, 'completed') with its zset writes batched
    local previous = task.status
    if previous == 'running' then done_rbw[#done_rbw + 1] = task.worker .. '|' .. id end
    task.status = 'completed'
    task_event(task, previous, now)
    done_index[#done_index + 1] = now_text
    done_index[#done_index + 1] = id
    done_hset[#done_hset + 1] = id
    done_hset[#done_hset + 1] = pack_sparse(task, now)
  else
    set_task_status(task, 'completed', now)
    put_task(task, now)
  end
  stat_add('completed', 1)
  redis.call('XADD', TK.completions, 'MAXLEN', '~', COMPLETIONS_MAXLEN, '*', 'task', id,
             'token', token, 'worker', wid)
  release_dependents(id, now)
  return 'completed'
end

local out = {}
-- the records read in one HMGET; a task named twice reads what the call made of it; once
-- waiting tasks were released or cancelled (their records written) every record is read afresh
local seen, fresh = {}, false
local function record_all()
  local ids = {}
  for i = 3, #ARGV - 3, 4 do ids[#ids + 1] = ARGV[i] end
  local raws = #ids > 0 and hmget_list(TK.tasks, ids) or {}
  local k = 0
  for i = 3, #ARGV - 3, 4 do
    k = k + 1
    local id, token, kind, data = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local task = seen[id]
    if not task then
      if fresh then
        task = get_task(id)
      elseif raws[k] then
        task = decode_task(raws[k])
      end
      seen[id] = task
    end
    if not task then
      out[#out + 1] = 'not_found'
    elseif kind == 'ok' then
      out[#out + 1] = complete(task, token, data)
    elseif task.status ~= 'running' or task.token ~= token then
      out[#out + 1] = 'stale'
    else
      out[#out + 1] = fail_attempt(task, data, kind == 'permanent', 0.5 + 0.5 * math.random(),
                                   now)
    end
  end
end
-- the batched completions are written even after an unexpected error (as each was at once)
local function write_done()
  if #done_hset == 0 then return end
  call_chunked('HSET', TK.tasks, done_hset)
  call_chunked('HSET', TK.result, done_results)
  call_chunked('ZREM', TK.leases, done_leases)
  if #done_rbw > 0 then call_chunked('ZREM', TK.running_by_worker, done_rbw) end
  call_chunked('ZADD', TASK_STATUS_KEY.completed, done_index)
  done_hset, done_results, done_leases, done_rbw, done_index = {}, {}, {}, {}, {}
end
-- the waiting tasks' release reads and writes records: the batched ones are written first, and
-- what this call read before is read again afterwards
before_drain = function()
  write_done()
  seen, fresh = {}, true
end
-- what was recorded before an unexpected error keeps its slot releases and counts: a retry
-- finds those tasks completed and would not free their slots again
local ok, err = pcall(record_all)
write_done()
local roomy = end_batch()
-- Wake the leader (multiswarm/wakeups.py) when it has work: a retry is due later or a task went
-- dead, dependents are to be released, or a swarm now has room for a quarter of its capacity
-- while tasks wait for room (ready, or parked). Not at every freed slot: under load the
-- worker's prefetch keeps its agents busy, and the leader then assigns in batches instead of
-- one call per completion (decision 54); and not when nothing waits: a submission wakes it
-- then, and a round that assigns nothing would only compete with the waiters for CPU.
-- (an empty zset does not exist: one EXISTS tells whether tasks are ready or parked)
local wake_leader = dependents_queued
  or (roomy and redis.call('EXISTS', TK.ready, parked_index) > 0)
for _, o in ipairs(out) do
  if o == 'retry' or o == 'dead' then wake_leader = true end
end
if wake_leader then wake(TK.tasks, 'leader') end
if not ok then error(err, 0) end
return out
