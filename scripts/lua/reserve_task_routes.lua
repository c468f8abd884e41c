-- reserve_task_routes: reserve new caller-chosen task ids for one partition before a batch is
-- submitted there, so concurrent submissions of one id meet in one partition (where
-- submit_tasks.lua makes the second one a no-op) instead of creating it in two.
-- KEYS[1] - routes hash: task id -> partition
-- KEYS[2] - expiry zset: task id scored by the Unix ms its reservation ends
-- ARGV[1] - partition k the caller chose
-- ARGV[2] - '1': k is fixed (the batch's dependencies are there); '0': ids already reserved for
--           one other partition move the batch there
-- ARGV[3] - reservation TTL in ms (longer than a submission's whole retry span)
-- ARGV[4..] - the ids, sorted
-- returns {partition, {}}: every id is reserved for that partition (those already were, the
--   others now); or {-1, {id, partition, ...}}: the ids reserved already, for partitions that
--   cannot share one batch (or are not the fixed one), and nothing was written
local k, fixed, ttl = tonumber(ARGV[1]), ARGV[2] == '1', tonumber(ARGV[3])
if not (k and ttl) then return fail('BAD_REQUEST', 'argument count') end
local now = now_ms()
-- ended reservations go first (a few more than this call adds: the hash stays bounded by the
-- reservations of one TTL)
local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ms_text(now), 'LIMIT', '0',
                         string.format('%d', #ARGV + 13))
if #ended > 0 then
  redis.call('HDEL', KEYS[1], unpack(ended))
  redis.call('ZREM', KEYS[2], unpack(ended))
end
local held, fresh, target = {}, {}, nil
for i = 4, #ARGV do
  local id = ARGV[i]
  local p = redis.call('HGET', KEYS[1], id)
  local until_ms = p and tonumber(redis.call('ZSCORE', KEYS[2], id) or '0')
  if p and until_ms > now then
    p = tonumber(p)
    held[#held + 1] = {id, p}
    if target == nil then target = p elseif target ~= p then target = false end
  else
    fresh[#fresh + 1] = id
  end
end
if target == nil then target = k end
if target == false or (fixed and target ~= k) then
  local out = {}
  for _, h in ipairs(held) do
    out[#out + 1] = h[1]
    out[#out + 1] = h[2]
  end
  return {-1, out}
end
local until_text = ms_text(now + ttl)
for _, id in ipairs(fresh) do
  redis.call('HSET', KEYS[1], id, string.format('%d', target))
  redis.call('ZADD', KEYS[2], until_text, id)
end
return {target, {}}
