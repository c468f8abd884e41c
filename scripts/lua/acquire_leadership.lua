-- acquire_leadership: SET NX leader election with a fencing epoch that only grows.
-- KEYS[1] - leader key ({ns}:leader), value JSON {holder, host, pid, epoch, acquired_ms}
-- KEYS[2] - epoch counter ({ns}:leader:epoch)
-- ARGV[1] - holder id (unique per coordinator process)
-- ARGV[2] - holder info JSON {host, pid}
-- ARGV[3] - lease in milliseconds
-- returns {epoch, 'acquired'} when this holder became leader,
--         {epoch, 'held'} when it already was (lease extended),
--         {0, <current holder>} when another holder has the lease
local current = redis.call('GET', KEYS[1])
if current then
  local ok, value = pcall(cjson.decode, current)
  if ok and type(value) == 'table' and value.holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return {value.epoch, 'held'}
  end
  return {0, ok and type(value) == 'table' and tostring(value.holder) or 'unknown'}
end
local ok, info = pcall(cjson.decode, ARGV[2])
if not ok or type(info) ~= 'table' then return fail('BAD_REQUEST', 'holder info is not JSON') end
local epoch = redis.call('INCR', KEYS[2])
info.holder = ARGV[1]
info.epoch = epoch
info.acquired_ms = now_ms()
redis.call('SET', KEYS[1], cjson.encode(info), 'NX', 'PX', ARGV[3])
return {epoch, 'acquired'}
