-- release_leadership: compare-and-delete, for an immediate hand-over on clean shutdown.
-- KEYS[1] - leader key
-- ARGV[1] - holder id
-- ARGV[2] - epoch the holder was elected with; 0: unknown (an acquire whose reply was never
--           read), then the instance must match
-- ARGV[3] - holder instance (acquire_leadership.lua); '' or absent: not compared
-- returns 1 if the lease was released, 0 if this holder did not have it
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, value = pcall(cjson.decode, current)
local epoch, instance = tonumber(ARGV[2]), ARGV[3] or ''
if ok and type(value) == 'table' and value.holder == ARGV[1]
    and (tonumber(value.epoch) == epoch or (epoch == 0 and instance ~= ''))
    and (instance == '' or value.instance == instance) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
