-- dead_letter_message: keep a refused message with its reason and count the reason.
-- KEYS[1] - message dead-letter stream ({ns}:messages:dlq), trimmed to ~ARGV[6] entries
-- KEYS[2] - message stats hash ({ns}:messages:stats): dlq, dlq:<reason> counters
-- ARGV[1] - reason code (malformed, too_large, unsupported_version, invalid_type, unsigned,
--           forged, stale, replayed)
-- ARGV[2] - detail
-- ARGV[3] - channel the message arrived on
-- ARGV[4] - receiver (sender id of the messenger that refused it)
-- ARGV[5] - the raw message (the caller truncates it)
-- ARGV[6] - dead-letter length kept (XADD MAXLEN ~)
-- returns the dead-letter entry id
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], '*', 'reason', ARGV[1],
                      'detail', ARGV[2], 'channel', ARGV[3], 'receiver', ARGV[4], 'raw', ARGV[5],
                      'ms', now_ms())
redis.call('HINCRBY', KEYS[2], 'dlq', 1)
redis.call('HINCRBY', KEYS[2], 'dlq:' .. ARGV[1], 1)
return id
