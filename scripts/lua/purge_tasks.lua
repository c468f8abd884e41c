-- purge_tasks: forget finished tasks of one status before their retention ends, as an
-- operator's `tasks purge` asks; bounded per call (the caller repeats while `more` is 1).
-- KEYS[1..26] - task keyset (lib/02_tasks.lua)
-- KEYS[27]    - retained ({ns}:tasks:retained, prune_tasks.lua): purged ids leave it too
-- ARGV[1] - status: completed | dead | cancelled
-- ARGV[2] - older than (ms): only tasks finished at least this long ago (0: all)
-- ARGV[3] - budget: most index entries examined in this call
-- ARGV[4] - ids to skip, csv: completed tasks found held by an earlier call of this purge
-- A completed task that an unfinished task depends on is kept (`held`): the dependent will read
-- its result. Everything else the task owned goes, as in the retention sweep.
-- returns {purged, held ids (csv), more}
local n = load_task_keys()
local PURGE_READERS = 200
local status, older, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if not TERMINAL[status] then return fail('BAD_REQUEST', 'status must be completed, dead or cancelled') end
if not older or older < 0 or not budget or budget < 1 then
  return fail('BAD_REQUEST', 'older-than and budget must be non-negative integers')
end
local skip = {}
for _, id in ipairs(split(ARGV[4])) do skip[id] = true end
local cutoff = now_ms() - older
local rows = redis.call('ZRANGEBYSCORE', TASK_STATUS_KEY[status], '-inf',
                        string.format('%d', cutoff), 'LIMIT', 0, budget + #split(ARGV[4]))
local purged, held, seen = 0, {}, 0
for _, id in ipairs(rows) do
  if not skip[id] then
    if seen >= budget then break end
    seen = seen + 1
    local keep = false
    if status == 'completed' then
      -- kept while a reader is unfinished, or while more than PURGE_READERS are left to look
      -- at (those looked at and ended are dropped, so a later purge gets further)
      keep = readers_state(id, PURGE_READERS) ~= 'none'
    end
    if keep then
      held[#held + 1] = id
    else
      forget_task(id, status)
      redis.call('ZREM', KEYS[n + 1], id)
      purged = purged + 1
    end
  end
end
return {purged, join(held), seen >= budget and 1 or 0}
