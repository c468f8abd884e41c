-- cast_vote: record one voter's vote; decide the proposal the moment an option reaches quorum.
-- One vote per eligible voter: the same vote again is a duplicate (harmless); a different second
-- vote is equivocation: the voter's vote is discarded (uncounted) and all its later votes too.
-- After the deadline without quorum the proposal ends 'no_quorum'. The result is written once.
-- KEYS[1] - the proposal hash ({ns}:votes:<proposal id>, fields in propose_vote.lua)
-- ARGV[1] - voter id
-- ARGV[2] - option
-- returns {outcome, status, result, closed_now}
--   outcome: recorded | duplicate | equivocation | discarded (voter already equivocated)
--            | closed (the vote had ended; nothing counted)
--   status: open | decided | no_quorum; result: the decided option or ''
--   closed_now: 1 when this call ended the vote (the caller announces the result)
-- error NOT_FOUND (no such proposal, or expired), NOT_ELIGIBLE, BAD_REQUEST (unknown option)
local voter, option = ARGV[1], ARGV[2]
local meta = hget_json(KEYS[1], 'meta')
if not meta then return fail('NOT_FOUND', 'proposal') end
if redis.call('HGET', KEYS[1], 'e:' .. voter) ~= '1' then
  return fail('NOT_ELIGIBLE', voter .. ' is not a voter of proposal ' .. meta.id)
end
if not contains(split(meta.options), option) then
  return fail('BAD_REQUEST', 'unknown option ' .. option .. ' (options ' .. meta.options .. ')')
end
local now = now_ms()
local closed_now = 0
if meta.status == 'open' and now >= meta.deadline_ms then
  meta.status = 'no_quorum'; meta.closed_ms = now; closed_now = 1
end

local outcome
local equivocated = redis.call('HGET', KEYS[1], 'x:' .. voter)
local previous = redis.call('HGET', KEYS[1], 'v:' .. voter)
if equivocated then
  if not contains(split(equivocated), option) then
    redis.call('HSET', KEYS[1], 'x:' .. voter, equivocated .. ',' .. option)
  end
  outcome = 'discarded'
elseif previous == option then
  outcome = 'duplicate'
elseif previous then
  -- a vote is only stored while the proposal is open, so it was counted: uncounted while the
  -- vote is open; once it ended, the counts stay those its result was decided on (a late
  -- change of mind changes nothing, docs/resilience.md)
  redis.call('HSET', KEYS[1], 'x:' .. voter, previous .. ',' .. option)
  if meta.status == 'open' then redis.call('HINCRBY', KEYS[1], 'c:' .. previous, -1) end
  outcome = 'equivocation'
elseif meta.status ~= 'open' then
  outcome = 'closed'
else
  redis.call('HSET', KEYS[1], 'v:' .. voter, option)
  local count = redis.call('HINCRBY', KEYS[1], 'c:' .. option, 1)
  if count >= meta.quorum then
    meta.status = 'decided'; meta.result = option; meta.closed_ms = now; closed_now = 1
  end
  outcome = 'recorded'
end
if closed_now == 1 then hset_json(KEYS[1], 'meta', meta) end
return {outcome, meta.status, meta.result, closed_now}
