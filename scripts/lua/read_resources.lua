-- read_resources: one consistent view of the pools and who holds what (read only).
-- KEYS[1] - pools hash ({ns}:resources: cap:<type>, used:<type>)
-- KEYS[2] - holdings hash ({ns}:resources:holders: <type>:<swarm id> -> amount held)
-- returns {HGETALL pools, HGETALL holdings}
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
