-- release_swarm_resources: give back everything a swarm holds, in every pool (when it ends).
-- Idempotent: a second call releases nothing.
-- KEYS[1] - pools hash ({ns}:resources: cap:<type>, used:<type>)
-- KEYS[2] - holdings hash ({ns}:resources:holders: <type>:<swarm id> -> amount held)
-- ARGV[1] - swarm id
-- returns {type, amount released, ...} for the pools it held something of
local swarm = ARGV[1]
local out = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 4) == 'cap:' then
    local rtype = string.sub(field, 5)
    -- (a held amount that is no number, hand-edited, is dropped: nothing to give back)
    local held = tonumber(redis.call('HGET', KEYS[2], rtype .. ':' .. swarm) or '0') or 0
    if held > 0 then
      redis.call('HINCRBY', KEYS[1], 'used:' .. rtype, -held)
      out[#out + 1] = rtype
      out[#out + 1] = held
    end
    redis.call('HDEL', KEYS[2], rtype .. ':' .. swarm)
  end
end
return out
