-- multiswarm Lua prelude, part 6: dispatch_tasks.lua's helpers that depend on no call's state,
-- defined once with the library rather than made again as closures on every call (decision 83).

-- profiles in id order (dispatch_tasks.lua sorts the profiles it read)
local function by_profile_id(a, b)
  return tonumber(a.id) < tonumber(b.id)
end

-- "b,a" and "a,b" are one capability set: a task's capability csv -> the sorted csv and its
-- list, memoized by the csv between calls (read only by callers; emptied at MEMO_MAX entries)
local CAPSET_MEMO = memo_new()
local function capset_build(caps)
  local need = split(caps)
  table.sort(need)
  return {join(need), need}
end
local function capset_of(caps)
  local known = memo_get(CAPSET_MEMO, caps, capset_build)
  return known[1], known[2]
end

-- whether swarms of profile p may run `handler` (nil: any), by their host's advert
local function may_run(p, handler)
  if not handler or not p._names or p._names[handler] then return true end
  for _, pre in ipairs(p._prefixes) do
    if pre ~= '' and string.sub(handler, 1, #pre) == pre then return true end
  end
  return false
end

-- up to n ids of index zset `kind` over `pids`, by id
local function some_ids(kind, pids, n)
  local ids = {}
  for _, pid in ipairs(pids) do
    for _, sid in ipairs(redis.call('ZRANGE', sx_key(kind, pid), 0, n - 1)) do
      ids[#ids + 1] = sid
    end
  end
  table.sort(ids)
  while #ids > n do table.remove(ids) end
  return ids
end

-- a parked set: its capability set and, for 'CAPSET|HANDLER', the handler
local function parse_set(set)
  local capset, handler = string.match(set, '^([^|]*)|(.+)$')
  if capset then return capset, handler end
  return set, nil
end
