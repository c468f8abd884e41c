-- tally_vote: the state of a vote; ends it 'no_quorum' once the deadline passed undecided.
-- KEYS[1] - the proposal hash ({ns}:votes:<proposal id>, fields in propose_vote.lua)
-- returns {closed_now, meta JSON, HGETALL of the hash}; closed_now 1 when this call ended the
--         vote (the caller announces the result); error NOT_FOUND (no such proposal, or expired)
local meta = hget_json(KEYS[1], 'meta')
if not meta then return fail('NOT_FOUND', 'proposal') end
local closed_now = 0
local now = now_ms()
if meta.status == 'open' and now >= meta.deadline_ms then
  meta.status = 'no_quorum'; meta.closed_ms = now; closed_now = 1
  hset_json(KEYS[1], 'meta', meta)
else
  -- it wrote nothing: no request record (decision 83), or every poll of a waiter kept a copy of
  -- the whole proposal for 120 s (found in review); a retry reads the state again
  REQUEST.none = true
end
return {closed_now, cjson.encode(meta), redis.call('HGETALL', KEYS[1])}
