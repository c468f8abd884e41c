-- release_resource: give back what a swarm holds of one pool (all of it, or `amount`, at most
-- what it holds, so a retried release cannot free another swarm's share).
-- KEYS[1] - pools hash ({ns}:resources: cap:<type>, used:<type>)
-- KEYS[2] - holdings hash ({ns}:resources:holders: <type>:<swarm id> -> amount held)
-- ARGV[1] - swarm id
-- ARGV[2] - resource type
-- ARGV[3] - amount, a positive integer, or '' for everything held
-- returns {released, still held by the swarm}; error BAD_REQUEST
local swarm, rtype = ARGV[1], ARGV[2]
local field = rtype .. ':' .. swarm
local held = tonumber(redis.call('HGET', KEYS[2], field) or '0')
local amount = held
if ARGV[3] ~= '' then
  amount = tonumber(ARGV[3])
  if not amount or amount <= 0 or amount ~= math.floor(amount) then
    return fail('BAD_REQUEST', 'amount must be a positive integer')
  end
  amount = math.min(amount, held)
end
if amount > 0 then
  redis.call('HINCRBY', KEYS[1], 'used:' .. rtype, -amount)
  held = redis.call('HINCRBY', KEYS[2], field, -amount)
end
if held <= 0 then redis.call('HDEL', KEYS[2], field) end
return {amount, held}
