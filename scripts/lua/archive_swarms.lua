-- archive_swarms: forget finished swarms whose archive period ended.
-- KEYS[1] - index set
-- KEYS[2] - swarms hash
-- KEYS[3..8] - status index sets
-- KEYS[9] - archive zset (id -> finished ms)
-- ARGV[1] - archive retention in milliseconds (7 days by default)
-- ARGV[2] - most swarms to forget in this call
-- A swarm with tasks still assigned or running stays (delete_swarm.lua says why), its archive
-- period started again.
-- returns the ids forgotten
load_swarm_status_keys(3)
swarm_index_keys(KEYS[2])
local now = now_ms()
local cutoff = now - tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', cutoff, 'LIMIT', 0, ARGV[2])
local gone = {}
for _, id in ipairs(due) do
  if swarm_active(id) > 0 then
    redis.call('ZADD', KEYS[9], string.format('%d', now), id)
  else
    gone[#gone + 1] = id
  end
end
for _, id in ipairs(gone) do
  local swarm = hget_json(KEYS[2], id)
  if swarm and SWARM_STATUS_KEY[swarm.status] then
    redis.call('SREM', SWARM_STATUS_KEY[swarm.status], id)
  end
  redis.call('HDEL', KEYS[2], id)
  swarm_index_drop(KEYS[2], id)
  redis.call('SREM', KEYS[1], id)
  redis.call('ZREM', KEYS[9], id)
end
return gone
