-- snapshot_state: copy the current state into a bounded list of recovery points (snapshots or
-- checkpoints: the same entry shape), trimming the oldest in the same step.
-- KEYS[1] - state hash (<ns>:state:{<swarm>})
-- KEYS[2] - entry list (<ns>:snapshots:{<swarm>} or <ns>:checkpoints:{<swarm>}), newest first,
--           JSON {id, kind, label, version, data, checksum, schema, state_updated_ms, taken_ms}
-- ARGV[1] - entry id (unique, chosen by the caller)
-- ARGV[2] - kind: 'snapshot' | 'checkpoint'
-- ARGV[3] - label (a snapshot's label, or a checkpoint's name)
-- ARGV[4] - entries to keep
-- ARGV[5] - TTL of the list in milliseconds
-- ARGV[6] - '1': replace older entries with the same label (named checkpoints), else '0'
-- ARGV[7] - min gap in ms: skip when the newest entry has this label and is younger (0: never).
--           Automatic snapshots pass the interval, so two state managers do not both take one.
-- ARGV[8] - '1': skip when the newest entry already holds the current version
-- returns {state version (0: no state, nothing taken), 1 taken | 0 skipped}
local fields = redis.call('HMGET', KEYS[1], 'version', 'data', 'checksum', 'updated_ms', 'schema')
if not fields[1] or not fields[2] then return {0, 0} end
local version = tonumber(fields[1])
if not version then return {0, 0} end  -- (no number: a corrupt state, not snapshotted)
local now = now_ms()
local newest_raw = redis.call('LINDEX', KEYS[2], 0)
if newest_raw then
  local ok, newest = pcall(cjson.decode, newest_raw)
  if ok and type(newest) == 'table' then
    if ARGV[8] == '1' and newest.version == version then return {version, 0} end
    local gap = tonumber(ARGV[7]) or 0
    if gap > 0 and newest.label == ARGV[3] and (newest.taken_ms or 0) > now - gap then
      return {version, 0}
    end
  end
end
if ARGV[6] == '1' then
  -- bounded by the retention (ARGV[4]), so the scan is short
  for _, raw in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    local ok, entry = pcall(cjson.decode, raw)
    if ok and type(entry) == 'table' and entry.label == ARGV[3] then
      redis.call('LREM', KEYS[2], 1, raw)
    end
  end
end
local entry = {id = ARGV[1], kind = ARGV[2], label = ARGV[3], version = version,
               data = fields[2], checksum = fields[3] or '', schema = tonumber(fields[5] or '1'),
               state_updated_ms = tonumber(fields[4] or '0'), taken_ms = now}
redis.call('LPUSH', KEYS[2], cjson.encode(entry))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {version, 1}
