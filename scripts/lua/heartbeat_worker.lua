-- heartbeat_worker: a worker says it is alive, with its load figures.
-- KEYS[1] - workers hash
-- KEYS[2] - heartbeats zset
-- KEYS[3] - swarms hash (the memory loads hang off it: lib/01b_swarm_index.lua)
-- ARGV[1] - worker id
-- ARGV[2] - report JSON {running, mem_used, mem_total, ...} merged into the worker record
-- ARGV[3] - memory load in [0, 1], kept per worker (least_loaded ties); one field per beat,
--           whatever the worker hosts
-- returns 1, or 0 when the worker was declared dead meanwhile (it must register again)
local worker = hget_json(KEYS[1], ARGV[1])
if not worker then return 0 end
local now = now_ms()
local ok, report = pcall(cjson.decode, ARGV[2])
if ok and type(report) == 'table' then
  for k, v in pairs(report) do
    if k ~= 'id' and k ~= 'swarms' then worker[k] = v end
  end
end
worker.beat_ms = now
hset_json(KEYS[1], ARGV[1], worker)
redis.call('ZADD', KEYS[2], now, ARGV[1])
local mem = tonumber(ARGV[3])
if mem then
  swarm_index_keys(KEYS[3])
  redis.call('HSET', SX.mem, ARGV[1], mem)
end
return 1
