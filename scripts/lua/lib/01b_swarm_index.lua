-- multiswarm Lua prelude, part 1b: the swarm dispatch index (docs/decisions.md, "dispatch index").
-- dispatch_tasks.lua picks swarms from these indexes instead of decoding every swarm record, so
-- a batch costs O(batch x log swarms). Swarms alike for dispatch (same sorted capabilities,
-- handler advert and priority) share a profile; profiles are few, swarms many.
-- The keys hang off the swarms hash key that every swarm script is passed, and carry its hash
-- tag, so they sit in its slot (the one place a script names a key it was not passed: passing
-- one key per swarm is the cost this index removes):
--   <swarms>:active       hash sid -> tasks assigned or running (kept out of the JSON record)
--   <swarms>:entry        hash sid -> JSON {p = profile, cap, st = open|held|'', why, hosts}
--   <swarms>:profiles     hash pid -> JSON {caps, handlers, prefixes, prio, n = members};
--                         's:' .. signature -> pid; 'next' -> last pid handed out
--   <swarms>:room         hash pid -> free slots of the profile's open swarms
--   <swarms>:open:<pid>   zset (by id) open swarms: active, unpaused, with a host
--   <swarms>:load:<pid>   zset open swarms with room, score 2 * active + memory load of a host
--   <swarms>:rr:<pid>     zset (by id) open swarms with room, for round_robin
--   <swarms>:held:<pid>   zset (by id) active swarms that take no work (paused, no live host)
--   <swarms>:stale        zset sid -> ms: swarms dispatch found without a live host
--   <swarms>:mem          hash worker id -> memory load in [0, 1] (heartbeat_worker.lua)
-- Memory load only breaks ties: a swarm's load score takes it when its active count changes.

local SX = {}

local function swarm_index_keys(swarms_key)
  if SX.base == swarms_key then return end
  SX.base = swarms_key
  SX.active, SX.entry = swarms_key .. ':active', swarms_key .. ':entry'
  SX.profiles, SX.room = swarms_key .. ':profiles', swarms_key .. ':room'
  SX.stale, SX.mem = swarms_key .. ':stale', swarms_key .. ':mem'
  SX.requeue = swarms_key .. ':requeue'
end

local function sx_key(kind, pid)
  return SX.base .. ':' .. kind .. ':' .. pid
end

-- the queue of swarm `sid` ({ns}:queue:<sid>, multiswarm/keys.py) next to the swarms hash
local function swarm_queue_key(swarms_key, sid)
  return string.sub(swarms_key, 1, #swarms_key - #'swarms') .. 'queue:' .. sid
end

-- Memoized key builders for the swarms hash named by key_memos_for (once per call): index zset
-- keys by kind and profile (sx_key) and queue keys by swarm (swarm_queue_key), kept between
-- calls (pure functions of their arguments; emptied when the swarms key changes or MEMO_MAX
-- keys are kept)
local KEY_MEMO = {base = nil, kinds = {}, queues = {}, n = 0}
local function key_memos_for(swarms_key)
  local m = KEY_MEMO
  if m.base ~= swarms_key or m.n >= MEMO_MAX then
    m.base, m.kinds, m.queues, m.n = swarms_key, {}, {}, 0
  end
end

local function kind_key(kind, pid)
  local m = KEY_MEMO
  local by_pid = m.kinds[kind]
  if not by_pid then
    by_pid = {}
    m.kinds[kind] = by_pid
  end
  local key = by_pid[pid]
  if not key then
    key = sx_key(kind, pid)
    by_pid[pid], m.n = key, m.n + 1
  end
  return key
end

local function swarm_queue(sid)
  local m = KEY_MEMO
  local key = m.queues[sid]
  if not key then
    key = swarm_queue_key(m.base, sid)
    m.queues[sid], m.n = key, m.n + 1
  end
  return key
end

local function swarm_active(sid)
  return tonumber(redis.call('HGET', SX.active, sid) or '0') or 0
end

local function load_score(e, active)
  local first = string.match(e.hosts or '', '^[^,]+')
  local mem = first and tonumber(redis.call('HGET', SX.mem, first) or '') or 0
  return 2 * active + math.min(1, math.max(0, mem))
end

-- add (sign 1) or take away (sign -1) what entry `e` of swarm `sid` puts in the indexes
local function sx_put(sid, e, active, sign)
  if e.st == 'open' then
    local room = math.max(0, e.cap - active)
    if sign > 0 then
      redis.call('ZADD', sx_key('open', e.p), '0', sid)
      if room > 0 then
        redis.call('ZADD', sx_key('load', e.p), load_score(e, active), sid)
        redis.call('ZADD', sx_key('rr', e.p), '0', sid)
      end
    else
      redis.call('ZREM', sx_key('open', e.p), sid)
      redis.call('ZREM', sx_key('load', e.p), sid)
      redis.call('ZREM', sx_key('rr', e.p), sid)
    end
    if room > 0 then redis.call('HINCRBY', SX.room, e.p, sign * room) end
  elseif e.st == 'held' then
    if sign > 0 then redis.call('ZADD', sx_key('held', e.p), '0', sid)
    else redis.call('ZREM', sx_key('held', e.p), sid) end
  end
end

local function profile_count(pid, delta)
  local p = hget_json(SX.profiles, pid)
  if not p then return end
  p.n = (p.n or 0) + delta
  if p.n > 0 then hset_json(SX.profiles, pid, p) return end
  redis.call('HDEL', SX.profiles, pid, 's:' .. p.sig)
  redis.call('HDEL', SX.room, pid)
end

-- the profile id of a swarm record (created on first use)
local function profile_of(swarm)
  local caps = split(swarm.caps)
  table.sort(caps)
  local handlers = type(swarm.handlers) == 'string' and swarm.handlers or nil
  local p = {caps = join(caps), handlers = handlers, prefixes = handlers and (swarm.prefixes or ''),
             prio = tonumber(swarm.prio) or 0}
  p.sig = cjson.encode({p.caps, p.handlers or false, p.prefixes or false, p.prio})
  local pid = redis.call('HGET', SX.profiles, 's:' .. p.sig)
  if pid then return pid end
  pid = tostring(redis.call('HINCRBY', SX.profiles, 'next', 1))
  p.n = 0
  redis.call('HSET', SX.profiles, 's:' .. p.sig, pid)
  hset_json(SX.profiles, pid, p)
  return pid
end

-- Bring the index entry of `swarm` (a decoded record, just written) up to date. Liveness of
-- hosts is not looked at here: dispatch checks the swarms it picks and holds those without one.
local function swarm_index_sync(swarms_key, swarm)
  swarm_index_keys(swarms_key)
  local sid = swarm.id
  local old = hget_json(SX.entry, sid)
  if not old and tonumber(swarm.active) and redis.call('HEXISTS', SX.active, sid) == 0 then
    -- a record written before the index existed carries its count
    if swarm.active > 0 then redis.call('HSET', SX.active, sid, swarm.active) end
  end
  local e = {p = profile_of(swarm), cap = tonumber(swarm.capacity) or 0, st = '',
             hosts = swarm.hosts or ''}
  if swarm.status == 'active' then
    if swarm.paused then e.st, e.why = 'held', 'paused'
    elseif e.hosts == '' then e.st, e.why = 'held', 'without a live host'
    else e.st = 'open' end
  end
  if old and old.p == e.p and old.cap == e.cap and old.st == e.st and old.why == e.why
      and old.hosts == e.hosts then
    return
  end
  local active = swarm_active(sid)
  if not old or old.p ~= e.p then profile_count(e.p, 1) end
  if old then
    sx_put(sid, old, active, -1)
    if old.p ~= e.p then profile_count(old.p, -1) end
  end
  sx_put(sid, e, active, 1)
  hset_json(SX.entry, sid, e)
  redis.call('ZREM', SX.stale, sid)
end

-- A swarm forgotten (delete_swarm, archive_swarms): out of every index.
local function swarm_index_drop(swarms_key, sid)
  swarm_index_keys(swarms_key)
  local old = hget_json(SX.entry, sid)
  if old then
    sx_put(sid, old, swarm_active(sid), -1)
    profile_count(old.p, -1)
  end
  redis.call('HDEL', SX.entry, sid)
  redis.call('HDEL', SX.active, sid)
  redis.call('ZREM', SX.stale, sid)
  redis.call('DEL', wake_name(swarms_key, 'swarm:' .. sid))  -- its wake-up stream (wake)
end

-- `delta` more (delta > 0) or fewer (< 0) tasks assigned to or running in swarm `sid`; the count
-- never goes below 0 (finish_tasks frees several slots of a swarm at once: decision 53).
-- `known`: its entry when the caller has it decoded. Returns the new count.
local function swarm_slot_change(swarms_key, sid, delta, known)
  swarm_index_keys(swarms_key)
  local open_cap = false  -- second value: its capacity when it is open (takes work), else false
  local new = redis.call('HINCRBY', SX.active, sid, delta)
  if new <= 0 then redis.call('HDEL', SX.active, sid) end  -- absent means 0
  local active = new - delta
  if new < 0 then
    -- more freed than counted (the swarm is gone, or a slot freed twice): down to 0
    if active <= 0 then return 0 end
    new = 0
  end
  local e = known or hget_json_ro(SX.entry, sid)  -- read only here
  if e and e.st == 'open' then
    open_cap = e.cap
    local r0, r1 = math.max(0, e.cap - active), math.max(0, e.cap - new)
    if r1 ~= r0 then redis.call('HINCRBY', SX.room, e.p, r1 - r0) end
    if r1 > 0 then
      redis.call('ZADD', sx_key('load', e.p), load_score(e, new), sid)
      if r0 == 0 then redis.call('ZADD', sx_key('rr', e.p), '0', sid) end
    else
      redis.call('ZREM', sx_key('load', e.p), sid)
      redis.call('ZREM', sx_key('rr', e.p), sid)
    end
  end
  return new, open_cap
end

-- Swarm `sid`, open in the index, moves to held ('without a live host') or back to open.
local function swarm_index_hold(sid, e, held, now)
  local active = swarm_active(sid)
  sx_put(sid, e, active, -1)
  if held then e.st, e.why = 'held', 'without a live host'
  else e.st, e.why = 'open', nil end
  sx_put(sid, e, active, 1)
  hset_json(SX.entry, sid, e)
  if held then redis.call('ZADD', SX.stale, now, sid)
  else redis.call('ZREM', SX.stale, sid) end
end

-- Profile `pid` as dispatch_tasks.lua reads it, from its text `raw`: the decoded record with
-- id, _caps (list), and for a host's advert (host_swarms.lua) _names (set) and _prefixes.
-- Memoized by text and id (decision 67): dispatch decodes a profile only when it changed (its
-- member count `n` is in the text, so a join or leave is a change). Callers only read it.
local PROFILE_MEMO = memo_new()
local function dispatch_profile(pid, raw)
  local p = PROFILE_MEMO.v[raw]
  if p and p.id == pid then return p end
  p = json_table(raw)
  if not p then return nil end
  p.id, p._caps = pid, split(p.caps)
  if type(p.handlers) == 'string' then
    p._names, p._prefixes = {}, split(p.prefixes)
    for _, h in ipairs(split(p.handlers)) do p._names[h] = true end
  end
  if PROFILE_MEMO.n >= MEMO_MAX then PROFILE_MEMO.v, PROFILE_MEMO.n = {}, 0 end
  if PROFILE_MEMO.v[raw] == nil then PROFILE_MEMO.n = PROFILE_MEMO.n + 1 end
  PROFILE_MEMO.v[raw] = p
  return p
end
