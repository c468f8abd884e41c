-- publish_message: record a message in its channel's history and publish it, as one step.
-- KEYS[1] - history stream of the channel (<ns>:history:{<channel>}): entries {m = envelope}
-- ARGV[1] - channel
-- ARGV[2] - envelope (JSON object text as encoded by the messenger, signature included)
-- ARGV[3] - history length kept (XADD MAXLEN ~, e.g. 1000)
-- ARGV[4] - history TTL in milliseconds (PEXPIRE, refreshed by every message, e.g. 3600000)
-- ARGV[5] - size limit in bytes (the caller checks it first; this is the server-side guard)
-- ARGV[6] - '1': SPUBLISH, a sharded channel of a Redis Cluster (its slot is KEYS[1]'s, whose
--           hash tag is the channel name); otherwise PUBLISH
-- returns {receivers, stream id}; what is published is the envelope with the stream id spliced
-- in as its first member ({"sid":"<ms>-<seq>",...}) so subscribers can replay what follows it;
-- error BAD_REQUEST when the envelope is too large or not a non-empty JSON object
local data = ARGV[2]
if #data > tonumber(ARGV[5]) then
  return fail('BAD_REQUEST', 'message is ' .. #data .. ' bytes, limit ' .. ARGV[5])
end
if string.sub(data, 1, 2) ~= '{"' then
  return fail('BAD_REQUEST', 'envelope must be a non-empty JSON object')
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'm', data)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local command = ARGV[6] == '1' and 'SPUBLISH' or 'PUBLISH'
local receivers = redis.call(command, ARGV[1], '{"sid":"' .. id .. '",' .. string.sub(data, 2))
return {receivers, id}
