-- record_progress: what a worker tells the records of the runs it holds beyond their outcomes
-- (multiswarm/worker_progress.py): the agent a run goes on and when it started (decision 130),
-- and its handler's latest progress report (decision 128). Views, not state: no event, index
-- or stats.
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- ARGV[1], ARGV[2], ... - septuples: task id, token of the run, agent ('' for none), how long
--   ago the run started (ms), fraction (0-1, '' for no report), note, how long ago it was
--   reported (ms). Ages, dated here by Redis's clock as every other time of a record (the
--   worker's clock may differ)
-- Written only for a running task whose token is the run's (fencing: a run that lost its
-- claim writes nothing); a report only if it is not older than the one recorded. So a retried
-- call writes the same values again, its times a few ms later (idempotent by nature).
-- returns how many records were written
load_task_keys()
local now = now_ms()
local written = 0
for i = 1, #ARGV, 7 do
  local id, token, agent, started = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local fraction, note, at = tonumber(ARGV[i + 4]), ARGV[i + 5], tonumber(ARGV[i + 6])
  if started then started = now - started end
  if at then at = now - at end
  local task = get_task(id)
  if task and task.status == 'running' and task.token == token then
    local changed = false
    if agent ~= '' and started then
      task.agent, task.started_ms, changed = agent, started, true
    end
    if fraction and at and fraction >= 0 and fraction <= 1
        and at >= (tonumber(task.progress_ms) or 0) then
      -- (nil, not the default: pack_sparse writes a record whose defaults are left out)
      task.progress = fraction > 0 and fraction or nil
      task.progress_note = note ~= '' and note or nil
      task.progress_ms, changed = at, true
    end
    if changed then
      redis.call('HSET', TK.tasks, id, pack_sparse(task, now))
      written = written + 1
    end
  end
end
return written
