-- quarantine_entry: move a corrupted snapshot or checkpoint out of its list, with the reason.
-- KEYS[1] - entry list (<ns>:snapshots:{<swarm>} or <ns>:checkpoints:{<swarm>})
-- KEYS[2] - quarantine list (<ns>:quarantine:{<swarm>}), newest first, JSON
--           {kind, id, reason, at_ms, raw}
-- ARGV[1] - kind ('snapshot' | 'checkpoint')
-- ARGV[2] - the entry exactly as read: removed by value, so entries pushed or trimmed since the
--           read do not shift what is removed
-- ARGV[3] - entry id if it could be read ('' otherwise)
-- ARGV[4] - reason
-- ARGV[5] - quarantine entries kept
-- ARGV[6] - TTL of the quarantine list in milliseconds
-- returns 1 when moved, 0 when the entry is no longer in the list (nothing written)
if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 0 then return 0 end
local entry = {kind = ARGV[1], id = ARGV[3], reason = ARGV[4], at_ms = now_ms(), raw = ARGV[2]}
redis.call('LPUSH', KEYS[2], cjson.encode(entry))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
