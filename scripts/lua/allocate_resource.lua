-- allocate_resource: give a live swarm `amount` of a pool, or refuse; a pool is never overdrawn.
-- KEYS[1] - pools hash ({ns}:resources: cap:<type>, used:<type>)
-- KEYS[2] - holdings hash ({ns}:resources:holders: <type>:<swarm id> -> amount held)
-- KEYS[3] - swarms hash ({ns}:swarms, id -> JSON record with status)
-- ARGV[1] - swarm id
-- ARGV[2] - resource type
-- ARGV[3] - amount, a positive integer
-- returns {held by the swarm now, allocated in the pool, capacity};
--         error NOT_FOUND (no such pool, or the swarm is unknown or has ended),
--         RESOURCE_EXHAUSTED (not enough free), BAD_REQUEST
local swarm, rtype, amount = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not amount or amount <= 0 or amount ~= math.floor(amount) then
  return fail('BAD_REQUEST', 'amount must be a positive integer')
end
local capacity = redis.call('HGET', KEYS[1], 'cap:' .. rtype)
if not capacity then return fail('NOT_FOUND', 'resource pool ' .. rtype) end
capacity = tonumber(capacity)
local record = hget_json(KEYS[3], swarm)
if not record or record.status == 'completed' or record.status == 'failed' then
  return fail('NOT_FOUND', 'no live swarm ' .. swarm)
end
local used = tonumber(redis.call('HGET', KEYS[1], 'used:' .. rtype) or '0')
if used + amount > capacity then
  return fail('RESOURCE_EXHAUSTED', rtype .. ': ' .. swarm .. ' asked for ' .. amount .. ', '
              .. (capacity - used) .. ' of ' .. capacity .. ' free')
end
used = redis.call('HINCRBY', KEYS[1], 'used:' .. rtype, amount)
local held = redis.call('HINCRBY', KEYS[2], rtype .. ':' .. swarm, amount)
return {held, used, capacity}
