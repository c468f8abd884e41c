-- reclaim_resources: release what swarms that ended (completed, failed) or are gone still hold;
-- the safety net behind release_swarm_resources when the process ending a swarm died first.
-- KEYS[1] - pools hash ({ns}:resources: cap:<type>, used:<type>)
-- KEYS[2] - holdings hash ({ns}:resources:holders: <type>:<swarm id> -> amount held)
-- KEYS[3] - swarms hash ({ns}:swarms, id -> JSON record with status)
-- returns {{swarm id, type, amount released}, ...}
local out = {}
local live = {}
local holdings = redis.call('HGETALL', KEYS[2])
for i = 1, #holdings, 2 do
  local field, held = holdings[i], tonumber(holdings[i + 1])
  local sep = string.find(field, ':', 1, true)
  local swarm = sep and held and string.sub(field, sep + 1)
  -- a holding this library did not write (hand-edited) is skipped: failing on it, every call
  -- would stop the reclaim of every holding after it
  if swarm and live[swarm] == nil then
    local record = hget_json(KEYS[3], swarm)
    live[swarm] = record ~= nil and record.status ~= 'completed' and record.status ~= 'failed'
  end
  if swarm and not live[swarm] then
    local rtype = string.sub(field, 1, sep - 1)
    redis.call('HINCRBY', KEYS[1], 'used:' .. rtype, -held)
    redis.call('HDEL', KEYS[2], field)
    out[#out + 1] = {swarm, rtype, held}
  end
end
return out
