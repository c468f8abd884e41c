-- renew_leadership: compare-and-extend of the leader lease.
-- KEYS[1] - leader key
-- ARGV[1] - holder id
-- ARGV[2] - epoch the holder was elected with
-- ARGV[3] - lease in milliseconds
-- ARGV[4] - holder instance (acquire_leadership.lua); '' or absent: not compared
-- returns 1 if the lease was extended, 0 if this holder no longer has it
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, value = pcall(cjson.decode, current)
if ok and type(value) == 'table' and value.holder == ARGV[1]
    and tonumber(value.epoch) == tonumber(ARGV[2])
    and (not ARGV[4] or ARGV[4] == '' or value.instance == ARGV[4]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
