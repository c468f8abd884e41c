-- multiswarm Lua prelude, part 5: dispatch's load ranking, kept in the call (decision 75).
-- dispatch_tasks.lua picks, for each task, the first swarm of a profile's load zset
-- ({ns}:swarms:load:<pid>, lib/01b_swarm_index.lua) and raises that swarm's score. Instead of
-- a ZRANGE and a ZADD per task, a call keeps the first entries of each load zset it reads in
-- Lua (TOPS[pid], a flat list: `all` when it holds every entry, then id, score, id, score...:
-- one ZRANGE per copy) and writes the load changes once per swarm (LOAD_W[key]: id, score or
-- false, ...; flushed before the zset is read again and at the end of the call). A changed
-- entry moves within the kept prefix by its score; it leaves the prefix when it goes past the
-- last entry of a partial one, and a score equal to another entry's (the zset then orders by
-- member bytes) drops the whole copy, to be read again. So the top is always the zset's first
-- entry as a ZRANGE would read it: the same choices as a ZRANGE and a ZADD per task.
-- The state lives in the library (tables reused from call to call; a copy is valid only in
-- the call that read it: TOPS_GEN): a table costs about what a command does (Lua's GC,
-- decision 71), and a call that assigns nothing allocates none here.
local TOP_READ = 4
local TOPS, TOPS_GEN, LOAD_W, LOAD_ORDER = {}, {}, {}, {}
local rank_gen, load_n = 0, 0

local function clear_list(t)
  for i = #t, 1, -1 do t[i] = nil end
end

-- at the start of each dispatch call
local function load_rank_begin()
  rank_gen = rank_gen + 1
  for i = 1, load_n do clear_list(LOAD_W[LOAD_ORDER[i]]) end  -- (left by a flush that failed)
  load_n = 0
  if rank_gen % MEMO_MAX == 0 then TOPS, TOPS_GEN, LOAD_W = {}, {}, {} end  -- (memory bound)
end

local function flush_load(key)
  local w = LOAD_W[key]
  if not w or not w[1] then return end
  local rems = nil
  local m = 0
  for i = 1, #w, 2 do
    local sid, score = w[i], w[i + 1]
    if score then
      w[m + 1] = score == math.floor(score) and string.format('%d', score) or score
      w[m + 2] = sid
      m = m + 2
    else
      rems = rems or {}
      rems[#rems + 1] = sid
    end
  end
  for i = #w, m + 1, -1 do w[i] = nil end
  if m > 0 then call_chunked('ZADD', key, w) end
  if rems then call_chunked('ZREM', key, rems) end
  clear_list(w)
end

-- the load writes of this call, all written (at its end)
local function flush_loads()
  for i = 1, load_n do flush_load(LOAD_ORDER[i]) end
  load_n = 0
end

-- the kept ranking of profile `pid` (read when there is none, or it ran out)
local function load_top(pid)
  local t = TOPS[pid]
  if t and TOPS_GEN[pid] == rank_gen and (t[2] or t[1]) then return t end
  local key = kind_key('load', pid)
  flush_load(key)
  t = redis.call('ZRANGE', key, '0', TOP_READ - 1, 'WITHSCORES')
  local n = #t
  for i = n, 1, -1 do t[i + 1] = i % 2 == 0 and tonumber(t[i]) or t[i] end
  t[1] = n < 2 * TOP_READ
  TOPS[pid], TOPS_GEN[pid] = t, rank_gen
  return t
end

-- swarm `sid` of profile `pid` gets load score `score` (nil: leaves the load zset)
local function set_load(pid, sid, score)
  local key = kind_key('load', pid)
  local w = LOAD_W[key]
  if not w then
    w = {}
    LOAD_W[key] = w
  end
  if not w[1] then
    load_n = load_n + 1
    LOAD_ORDER[load_n] = key
  end
  local i = 1
  while w[i] and w[i] ~= sid do i = i + 2 end
  w[i], w[i + 1] = sid, score or false
  local t = TOPS[pid]
  if not t or TOPS_GEN[pid] ~= rank_gen then return end
  local n, at = #t, nil
  for j = 2, n, 2 do
    if t[j] == sid then at = j break end
  end
  if not at then
    TOPS_GEN[pid] = nil  -- (not in the kept prefix: read again when needed)
    return
  end
  table.remove(t, at)
  table.remove(t, at)
  if not score then return end
  n = n - 2
  local to = n + 1
  for j = 2, n, 2 do
    if t[j + 1] == score then
      TOPS_GEN[pid] = nil  -- a tie is ordered by member bytes: read again
      return
    end
    if t[j + 1] > score then to = j break end
  end
  if to <= n or t[1] then
    table.insert(t, to, score)
    table.insert(t, to, sid)
  end
end

-- the load zset of profile `pid` changes outside set_load (holds): its pending writes first,
-- and the kept ranking is read again
local function load_changes(pid)
  flush_load(kind_key('load', pid))
  TOPS_GEN[pid] = nil
end
