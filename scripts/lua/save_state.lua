-- save_state: versioned per-swarm state with compare-and-set on the version.
-- KEYS[1] - state hash (<ns>:state:{<swarm>}): version, data (JSON text), checksum, updated_ms,
--           schema
-- ARGV[1] - expected version ('' to accept any; 0 when the caller saw no state)
-- ARGV[2] - data
-- ARGV[3] - checksum of data (hex SHA-256, computed by the caller)
-- ARGV[4] - TTL in milliseconds (SWARM_TTL)
-- ARGV[5] - schema version of data
-- The version field outlives quarantine (quarantine_state.lua keeps it), so versions only grow
-- and a writer holding a version read before the quarantine gets VERSION_CONFLICT.
-- returns the new version; error VERSION_CONFLICT when the stored version differs
local stored = redis.call('HGET', KEYS[1], 'version') or '0'
local current = tonumber(stored)
-- (a version that is no number, hand-edited, is no version a writer could have read:
-- update_state quarantines that state first, which drops it)
if not current then
  return fail('VERSION_CONFLICT', 'stored version ' .. stored .. ' is not a number')
end
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= current then
  return fail('VERSION_CONFLICT', 'expected version ' .. ARGV[1] .. ', stored ' .. current)
end
local version = current + 1
redis.call('HSET', KEYS[1], 'version', version, 'data', ARGV[2], 'checksum', ARGV[3],
           'updated_ms', now_ms(), 'schema', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return version
