-- release_leadership: compare-and-delete, for an immediate hand-over on clean shutdown.
-- KEYS[1] - leader key
-- ARGV[1] - holder id
-- ARGV[2] - epoch the holder was elected with
-- ARGV[3] - holder instance (acquire_leadership.lua); '' or absent: not compared
-- returns 1 if the lease was released, 0 if this holder did not have it
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, value = pcall(cjson.decode, current)
if ok and type(value) == 'table' and value.holder == ARGV[1]
    and tonumber(value.epoch) == tonumber(ARGV[2])
    and (not ARGV[3] or ARGV[3] == '' or value.instance == ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
