-- propose_vote: open a vote among named voters, closing at a deadline on the server clock.
-- Quorum q = floor(2n/3) + 1 of the n eligible voters: with at most f faulty voters and
-- n >= 3f + 1 the honest voters alone can reach it, and no two options can (docs/resilience.md).
-- Proposal hash fields: meta (JSON, below), e:<voter> eligible ('1'), v:<voter> vote,
-- x:<voter> options of an equivocating voter (csv), c:<option> valid votes counted.
-- KEYS[1] - the proposal hash ({ns}:votes:<proposal id>)
-- KEYS[2] - proposal index ({ns}:votes, zset proposal id -> ms its hash expires)
-- ARGV[1] - proposal id
-- ARGV[2] - topic (free text, at most 200 bytes kept)
-- ARGV[3] - proposer id
-- ARGV[4] - options, csv of ids
-- ARGV[5] - deadline, ms from now
-- ARGV[6] - retention after the deadline, ms (the hash expires then)
-- ARGV[7] - most proposals kept in the index
-- ARGV[8..] - voter ids (distinct)
-- returns {deadline_ms (server clock), quorum}; error ALREADY_EXISTS, BAD_REQUEST
local id, deadline, retention, keep = ARGV[1], tonumber(ARGV[5]), tonumber(ARGV[6]),
                                      tonumber(ARGV[7])
local n = #ARGV - 7
if n < 1 then return fail('BAD_REQUEST', 'a vote needs at least one voter') end
if #split(ARGV[4]) < 1 then return fail('BAD_REQUEST', 'a vote needs at least one option') end
if not deadline or deadline <= 0 or not retention or retention < 0 then
  return fail('BAD_REQUEST', 'deadline and retention must be positive ms')
end
if redis.call('EXISTS', KEYS[1]) == 1 then return fail('ALREADY_EXISTS', 'proposal ' .. id) end
local now = now_ms()
local quorum = math.floor(2 * n / 3) + 1
for i = 8, #ARGV do
  if redis.call('HSETNX', KEYS[1], 'e:' .. ARGV[i], '1') == 0 then
    redis.call('DEL', KEYS[1])
    return fail('BAD_REQUEST', 'voter ' .. ARGV[i] .. ' listed twice')
  end
end
local meta = {id = id, topic = string.sub(ARGV[2], 1, 200), proposer = ARGV[3],
              options = ARGV[4], n = n, quorum = quorum, created_ms = now,
              deadline_ms = now + deadline, status = 'open', result = '', closed_ms = 0}
hset_json(KEYS[1], 'meta', meta)
local expires = now + deadline + retention
redis.call('PEXPIREAT', KEYS[1], expires)
redis.call('ZADD', KEYS[2], expires, id)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -keep - 1)
return {meta.deadline_ms, quorum}
