-- snapshot_state: copy the current state into the bounded snapshot list.
-- KEYS[1] - state hash (<ns>:state:{<swarm>})
-- KEYS[2] - snapshot list (<ns>:snapshots:{<swarm>}), newest first, JSON entries
-- ARGV[1] - label
-- ARGV[2] - entries to keep (oldest beyond are trimmed in the same step)
-- ARGV[3] - TTL of the snapshot list in milliseconds
-- returns the state version captured, or 0 when there is no state
local fields = redis.call('HMGET', KEYS[1], 'version', 'data', 'checksum', 'updated_ms')
if not fields[1] then return 0 end
local entry = {label = ARGV[1], version = tonumber(fields[1]), data = fields[2],
               checksum = fields[3], state_updated_ms = tonumber(fields[4]), taken_ms = now_ms()}
redis.call('LPUSH', KEYS[2], cjson.encode(entry))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return entry.version
