-- record_recovery: second step of applying a recovery plan (the swarm's own slot): restore the
-- chosen recovery point as current state when it is not the current state, and append the
-- plan's outcome to the swarm's recovery log, once per plan.
-- KEYS[1] - state hash (<ns>:state:{<swarm>})
-- KEYS[2] - recovery log (<ns>:recovery:{<swarm>}), list, newest first, JSON {plan, ...}
-- ARGV[1] - plan id
-- ARGV[2] - log entry JSON (must carry "plan": ARGV[1])
-- ARGV[3] - data to restore as current state ('' to leave the state as it is)
-- ARGV[4] - checksum of ARGV[3]
-- ARGV[5] - schema version of ARGV[3]
-- ARGV[6] - TTL in milliseconds (state and log)
-- ARGV[7] - log entries kept (the idempotency check reads at most this many)
-- returns {1, state version} when recorded now, {0, state version} when this plan was recorded
-- before (nothing written)
-- (a version that is no number, hand-edited, counts as none: the restore starts again at 1)
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') or 0
for _, raw in ipairs(redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[7]) - 1)) do
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' and entry.plan == ARGV[1] then return {0, version} end
end
if ARGV[3] ~= '' then
  version = version + 1
  redis.call('HSET', KEYS[1], 'version', version, 'data', ARGV[3], 'checksum', ARGV[4],
             'updated_ms', now_ms(), 'schema', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {1, version}
