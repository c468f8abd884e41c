-- record_progress: a worker writes the latest progress reports of runs it holds (decision 128;
-- multiswarm/worker_progress.py). A view, not state: no event, no index, no stats.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- ARGV[1], ARGV[2], ... - quintuples: task id, token of the run, fraction (0-1), note, when (ms)
-- A report is written only for a running task whose token is the run's (fencing: a run that
-- lost its claim reports nothing) and only if it is not older than the one recorded, so a
-- retried call, which writes the same reports again, changes nothing (idempotent by nature).
-- returns how many reports were written
load_task_keys()
local now = now_ms()
local written = 0
for i = 1, #ARGV, 5 do
  local id, token = ARGV[i], ARGV[i + 1]
  local fraction, note, at = tonumber(ARGV[i + 2]), ARGV[i + 3], tonumber(ARGV[i + 4])
  local task = get_task(id)
  if task and task.status == 'running' and task.token == token and fraction and at
      and fraction >= 0 and fraction <= 1 and at >= (tonumber(task.progress_ms) or 0) then
    -- (nil, not the default: pack_sparse writes a record whose defaults are left out)
    task.progress = fraction > 0 and fraction or nil
    task.progress_note = note ~= '' and note or nil
    task.progress_ms = at
    redis.call('HSET', TK.tasks, id, pack_sparse(task, now))
    written = written + 1
  end
end
return written
