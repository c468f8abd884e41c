-- acquire_leadership: SET NX leader election with a fencing epoch that only grows.
-- KEYS[1] - leader key ({ns}:leader), value JSON {holder, instance, host, pid, epoch, acquired_ms}
-- KEYS[2] - epoch counter ({ns}:leader:epoch)
-- ARGV[1] - holder id (the coordinator's --id)
-- ARGV[2] - holder info JSON {host, pid, instance}; instance is unique per process (per
--           LeaderElection), so two processes started with the same id are told apart
-- ARGV[3] - lease in milliseconds
-- returns {epoch, 'acquired'} when this holder became leader,
--         {epoch, 'held'} when it already was (lease extended; a retried call lands here),
--         {0, <current holder>} when another holder has the lease;
--   error ALREADY_EXISTS when a live lease carries this holder id but another instance: a
--   second process runs with the same id (both would lead with one epoch)
local ok, info = pcall(cjson.decode, ARGV[2])
if not ok or type(info) ~= 'table' then return fail('BAD_REQUEST', 'holder info is not JSON') end
local current = redis.call('GET', KEYS[1])
if current then
  local good, value = pcall(cjson.decode, current)
  if good and type(value) == 'table' and value.holder == ARGV[1] then
    if (value.instance or '') ~= (info.instance or '') then
      return fail('ALREADY_EXISTS', 'coordinator id ' .. ARGV[1] .. ' is already held by a live '
                  .. 'leader lease of another process (host ' .. tostring(value.host) .. ', pid '
                  .. tostring(value.pid) .. '): give each coordinator its own --id')
    end
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return {value.epoch, 'held'}
  end
  return {0, good and type(value) == 'table' and tostring(value.holder) or 'unknown'}
end
local epoch = redis.call('INCR', KEYS[2])
info.holder = ARGV[1]
info.epoch = epoch
info.acquired_ms = now_ms()
redis.call('SET', KEYS[1], cjson.encode(info), 'NX', 'PX', ARGV[3])
return {epoch, 'acquired'}
