-- quarantine_state: move a corrupted current state aside, with the reason it was rejected.
-- KEYS[1] - state hash (<ns>:state:{<swarm>})
-- KEYS[2] - quarantine list (<ns>:quarantine:{<swarm>}), newest first, JSON
--           {kind, id, reason, at_ms, version, data, checksum, updated_ms, schema}
-- ARGV[1] - version that was examined: only that version moves, so a state saved after the
--           check (e.g. by a worker hosting the swarm again) is never quarantined by mistake
-- ARGV[2] - reason (bad encoding | checksum mismatch | wrong schema, with detail)
-- ARGV[3] - quarantine entries kept
-- ARGV[4] - TTL of the quarantine list in milliseconds
-- The version field stays, so later saves keep counting up (save_state.lua), unless it is no
-- number.
-- returns 1 when moved, 0 when the stored version is another one (nothing written)
local f = redis.call('HMGET', KEYS[1], 'version', 'data', 'checksum', 'updated_ms', 'schema')
if not f[1] or not f[2] or f[1] ~= ARGV[1] then return 0 end
local entry = {kind = 'state', id = 'v' .. f[1], reason = ARGV[2], at_ms = now_ms(),
               version = tonumber(f[1]), data = f[2], checksum = f[3] or '',
               updated_ms = tonumber(f[4] or '0') or 0, schema = f[5] or ''}
redis.call('LPUSH', KEYS[2], cjson.encode(entry))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('HDEL', KEYS[1], 'data', 'checksum', 'updated_ms', 'schema')
-- a version that is no number cannot be counted up: it goes too (saves start again from 0)
if not tonumber(f[1]) then redis.call('HDEL', KEYS[1], 'version') end
return 1
