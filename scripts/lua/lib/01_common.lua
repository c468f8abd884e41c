-- multiswarm Lua prelude, part 1: helpers shared by every script.
-- Prepended (with the other lib/ files, in name order) to each script when it is loaded; never
-- called on its own. Scripts refuse operations with error replies of the form
-- "<CODE> <detail>" that multiswarm/scripts.py turns into typed Python errors.
-- Time comes from the server (TIME) so every process of a deployment shares one clock.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fail(code, detail)
  return redis.error_reply(code .. ' ' .. (detail or ''))
end

-- Blind-time guard of the periodic sweeps (reap_leases, reap_workers: decision 114). The clock
-- at `key` is '<last call ms>|<blind from>|<blind to>'. A call more than `gap_ms` after the
-- last one finds that Redis time passed which no client could use (Redis stalled, unreachable
-- or restarting, or no caller at all) and takes (last, now] as the latest blind window. Returns
-- that window (nil, nil when none was seen); advances the clock.
local function sweep_clock(key, now, gap_ms)
  local last, from, to
  local raw = redis.call('GET', key)
  if raw then
    last, from, to = string.match(raw, '^(%d+)|(%d*)|(%d*)$')
    last, from, to = tonumber(last), tonumber(from), tonumber(to)
  end
  if last and gap_ms > 0 and now - last > gap_ms then from, to = last, now end
  redis.call('SET', key, string.format('%d', now) .. '|'
             .. (from and string.format('%d|%d', from, to) or '|'))
  return from, to
end

-- "a,b,c" <-> {'a','b','c'}; ids never contain commas (multiswarm/keys.py ID_PATTERN).
local function split(s)
  local out = {}
  if not s or s == '' then return out end  -- HGET of a missing field gives false
  for item in string.gmatch(s, '[^,]+') do out[#out + 1] = item end
  return out
end

local function join(list)
  return table.concat(list, ',')
end

local function contains(list, value)
  for _, v in ipairs(list) do if v == value then return true end end
  return false
end

local function remove_value(list, value)
  local out = {}
  for _, v in ipairs(list) do if v ~= value then out[#out + 1] = v end end
  return out
end

-- true when every capability in `need` is in `have` (both lists)
local function covers(have, need)
  for _, c in ipairs(need) do
    if not contains(have, c) then return false end
  end
  return true
end

-- Wake-ups (multiswarm/wakeups.py, decisions 50 and 94): an empty PUBLISH on the channel
-- '{tag}:wake:<what>', where {tag} is the hash tag of `key` (any key of the calling script's
-- partition; multiswarm/keys.py Keys.wake_leader and Keys.wake_swarm build the same names), and
-- an entry on the stream of that name, which keeps only its last one: a process blocked in
-- XREAD on it with a script call pipelined behind (Scripts.call_when_woken) has that call run
-- at once. Classic PUBLISH on a cluster too.
local function wake_name(key, what)
  return string.match(key, '^({[^}]*})') .. ':wake:' .. what
end

local function wake(key, what)
  local name = wake_name(key, what)
  redis.call('PUBLISH', name, '')
  redis.call('XADD', name, 'MAXLEN', '1', '*', 'w', '')
end

local function hget_json(key, field)
  local raw = redis.call('HGET', key, field)
  if not raw then return nil end
  local ok, value = pcall(cjson.decode, raw)
  if not ok or type(value) ~= 'table' then return nil, raw end
  return value
end

-- Decoded records kept between calls (decision 67). The library's upvalues live as long as the
-- library: a table here memoizes a pure function of a record's text (its decoded value, or
-- what a script derives from it), so a call whose record did not change since the last one
-- skips the cjson decode (the text is still read: the text decides, the memo only remembers
-- what it decoded to). Values handed out are shared between calls and must never be changed
-- by their caller. Each memo is emptied when it reaches MEMO_MAX entries (memory bound).
-- Run by EVAL (sources(), tests) the prelude starts afresh each call: the memo is then empty.
local MEMO_MAX = 256
local function memo_new()
  return {n = 0, v = {}}
end

-- the value memoized for `raw` in `m`, or build(raw) kept there (nil is not kept)
local function memo_get(m, raw, build)
  local v = m.v[raw]
  if v ~= nil then return v end
  v = build(raw)
  if v == nil then return nil end
  if m.n >= MEMO_MAX then m.v, m.n = {}, 0 end
  m.v[raw], m.n = v, m.n + 1
  return v
end

local function json_table(raw)
  local ok, value = pcall(cjson.decode, raw)
  if ok and type(value) == 'table' then return value end
  return nil
end

-- hget_json for a value the caller only reads (never changes): memoized by its text
local JSON_MEMO = memo_new()
local function hget_json_ro(key, field)
  local raw = redis.call('HGET', key, field)
  if not raw then return nil end
  local value = memo_get(JSON_MEMO, raw, json_table)
  if value == nil then return nil, raw end
  return value
end

local function hset_json(key, field, value)
  redis.call('HSET', key, field, cjson.encode(value))
end

-- Prefetch (decision 83): a request-id script may name string keys it reads in its header
-- (`-- prefetch: KEYS[i] ...`, multiswarm/script_headers.py); with_request_id reads them with
-- its request key in one MGET, and read_string hands out what that read (a GET otherwise). A
-- script prefetches only keys it never writes before it reads them: the value is the one at
-- the call's start. PREFETCH (key -> value, false for a missing key) is set per call.
local PREFETCH = nil

-- GET `key`, or its prefetched value
local function read_string(key)
  local pre = PREFETCH
  if pre then
    local v = pre[key]
    if v ~= nil then return v end
  end
  return redis.call('GET', key)
end

-- Fencing: a leader-only write carries the epoch it was elected with; the epoch counter only
-- grows (acquire_leadership.lua), so an epoch below it belongs to a deposed leader.
-- With leader_key and holder, the live lease must also name the caller (holder id, process
-- instance, epoch): after the counter rolled back (failover to a lagging replica, AOF everysec
-- loss) a deposed leader and its successor can hold equal epochs, and only the lease tells them
-- apart. Returns true, current epoch; or false and why.
local function check_epoch(epoch_key, epoch, leader_key, holder, instance)
  local current = tonumber(read_string(epoch_key) or '0')
  epoch = tonumber(epoch)
  if epoch == nil or epoch < current then
    return false, 'epoch ' .. tostring(epoch) .. ' < ' .. current
  end
  if leader_key then
    -- the lease decoded from the text read now (memoized by that text: the same text decodes
    -- to the same lease, so the check is the one made on a fresh decode)
    local raw = read_string(leader_key)
    local lease = raw and memo_get(JSON_MEMO, raw, json_table)
    if not lease then
      return false, 'no live leader lease (epoch ' .. epoch .. ')'
    end
    if lease.holder ~= holder or tonumber(lease.epoch) ~= epoch
        or (instance and instance ~= '' and lease.instance ~= instance) then
      return false, 'the lease is held by ' .. tostring(lease.holder) .. ' epoch '
        .. tostring(lease.epoch) .. ', not ' .. tostring(holder) .. ' epoch ' .. epoch
    end
  end
  return true, current
end

-- Request ids: a call the client may retry (a stall past the socket timeout, a reply lost after
-- the script ran) carries one extra key, last in KEYS, named after a request id made once per
-- logical call ({tag}:...:req:<id>, multiswarm/keys.py request_key). The first run records its
-- outcome there for REQUEST_TTL_MS; a retry finds it and returns that outcome without acting
-- again (multiswarm/scripts.py wraps each such script in with_request_id). Refusals (error
-- replies) are not recorded: a refused script wrote nothing, so running it again is safe.
-- REQUEST_TTL_MS must equal multiswarm/config.py REQUEST_TTL_MS and exceed every retry window.
local REQUEST_TTL_MS = '120000'  -- as text: a number handed to redis.call costs a '%.17g'
-- A script with a custom replay reads what its first run recorded from REPLAY (nil on a first
-- run) and may set REQUEST.record to keep something smaller than its reply (claim_tasks keeps
-- ids and fencing tokens, not payloads). REQUEST's fields are cleared at each call (one table
-- for the library's life: a table a call costs ~1 K instructions, decision 83).
local REPLAY = nil
local REQUEST = {}

-- MessagePack, not JSON: cjson formats each number with fpconv (~2 K instructions each) and a
-- dispatch reply carries a few (decision 80). JSON where the Lua has no cmsgpack (fakeredis, for
-- the pure-logic contract tests): a replay reads either, by the first byte.
-- (chosen at the first call: a library's load sees neither library)
local request_codec = nil
local function pack_request(value)
  if request_codec == nil then
    request_codec = pcall(function() return cmsgpack.pack end) and 'msgpack' or 'json'
  end
  if request_codec == 'msgpack' then return cmsgpack.pack(value) end
  return cjson.encode(value)
end

-- REQUEST.none (decision 83): the call wrote nothing (an idle dispatch, a claim that found no
-- task), so no record is written: a retry runs it again, which is what replaying "nothing"
-- would give, as a call that wrote nothing leaves nothing a second run could repeat.
local function with_request_id(body, custom_replay, prefetch)
  local key = KEYS[#KEYS]
  local raw
  if prefetch then
    local got = redis.call('MGET', key, unpack(prefetch))
    raw = got[1]
    for i = 1, #prefetch do prefetch[prefetch[i]] = got[i + 1] end
    PREFETCH = prefetch
  else
    raw = redis.call('GET', key)
  end
  if raw then
    -- MessagePack (decision 80); a record written by an earlier version is JSON ('{': a
    -- MessagePack map of one entry starts with 0x81)
    local recorded
    if string.byte(raw, 1) == 123 then recorded = cjson.decode(raw)
    else recorded = cmsgpack.unpack(raw) end
    if not custom_replay then return recorded.v end
    REPLAY = recorded.v
    return body()
  end
  local reply = body()
  if type(reply) == 'table' and reply.err then return reply end
  if REQUEST.none then return reply end
  local record = REQUEST.record
  if record == nil then record = reply end
  redis.call('SET', key, pack_request({v = record}), 'PX', REQUEST_TTL_MS)
  return reply
end
