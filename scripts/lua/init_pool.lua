-- init_pool: create a resource pool, or change its capacity (never below what is allocated).
-- KEYS[1] - pools hash ({ns}:resources: cap:<type> -> capacity, used:<type> -> allocated)
-- ARGV[1] - resource type (an id: cpu, memory, or a custom name)
-- ARGV[2] - capacity, a non-negative integer in the pool's unit
-- returns 'created' | 'resized' | 'unchanged'; error BAD_REQUEST (capacity below allocated)
local rtype, capacity = ARGV[1], tonumber(ARGV[2])
if not capacity or capacity < 0 or capacity ~= math.floor(capacity) then
  return fail('BAD_REQUEST', 'capacity must be a non-negative integer')
end
local current = redis.call('HGET', KEYS[1], 'cap:' .. rtype)
if not current then
  redis.call('HSET', KEYS[1], 'cap:' .. rtype, ARGV[2], 'used:' .. rtype, 0)
  return 'created'
end
if tonumber(current) == capacity then return 'unchanged' end
local used = tonumber(redis.call('HGET', KEYS[1], 'used:' .. rtype) or '0')
if capacity < used then
  return fail('BAD_REQUEST', rtype .. ': capacity ' .. ARGV[2] .. ' is below the ' .. used
              .. ' allocated; release first')
end
redis.call('HSET', KEYS[1], 'cap:' .. rtype, ARGV[2])
return 'resized'
