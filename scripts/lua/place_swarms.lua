-- place_swarms: put each swarm in a coordination partition, once (decision 44).
-- A swarm already placed keeps its partition, whatever capabilities it is placed with later.
-- A new one goes to the partition holding the
-- fewest swarms of the same capability set, then the fewest swarms, then the lowest number:
-- swarms alike spread evenly, so each partition covers the capabilities of a DAG when there
-- are at least as many swarms of each kind as partitions.
-- KEYS[1] - directory hash: swarm id -> "<partition>|<capabilities csv>"
-- KEYS[2] - counts hash: "<p>|*" swarms in p, "<p>|=<csv>" swarms of that set, "<p>|<cap>"
-- ARGV[1] - partitions P
-- ARGV[2], ARGV[3].. - pairs: swarm id, its capabilities as a sorted csv
-- returns the partition of each swarm, in order
local P = tonumber(ARGV[1])
local out = {}

local function count(p, what)
  return tonumber(redis.call('HGET', KEYS[2], p .. '|' .. what) or '0')
end

-- (a count that falls to 0 goes: capability sets come and go, and their fields with them)
local function bump(field, by)
  if redis.call('HINCRBY', KEYS[2], field, by) <= 0 then redis.call('HDEL', KEYS[2], field) end
end

local function add(p, csv, by)
  bump(p .. '|*', by)
  bump(p .. '|=' .. csv, by)
  for cap in string.gmatch(csv, '[^,]+') do bump(p .. '|' .. cap, by) end
end

for i = 2, #ARGV, 2 do
  local id, csv = ARGV[i], ARGV[i + 1]
  local placed = redis.call('HGET', KEYS[1], id)
  local p = nil
  if placed then
    local at, old = string.match(placed, '^(%d+)|(.*)$')
    at = tonumber(at)
    if at < P then
      p = at
      if old ~= csv then
        -- its capabilities changed (a worker hosting it with others): it stays where its record
        -- and its tasks are, and the counts follow its new set (placed afresh, it left them
        -- behind without a host and got a second record elsewhere: found in review)
        add(at, old, -1)
        add(at, csv, 1)
        redis.call('HSET', KEYS[1], id, at .. '|' .. csv)
      end
    else
      -- the deployment's partition count changed (refused since: decision 107): afresh
      add(at, old, -1)
    end
  end
  if p == nil then
    local best, best_same, best_all = 0, nil, nil
    for q = 0, P - 1 do
      local same, all = count(q, '=' .. csv), count(q, '*')
      if best_same == nil or same < best_same or (same == best_same and all < best_all) then
        best, best_same, best_all = q, same, all
      end
    end
    p = best
    add(p, csv, 1)
    redis.call('HSET', KEYS[1], id, p .. '|' .. csv)
  end
  out[#out + 1] = p
end
return out
