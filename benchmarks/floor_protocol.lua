#!lua name=floor
-- A floor, not multiswarm's protocol (bench_script_cost.py --floor, decision 90): the same four
-- steps at the same batch sizes with none of what multiswarm keeps per task beyond a state
-- string. A record is written once (at submit) as opaque bytes that no script decodes; the
-- state is a short string in a hash of its own; no request records, fencing, strategies,
-- capabilities, dependencies, retries, events or indexes.

-- KEYS: tasks payload state ready stats; ARGV: (id, record, payload)...
local function submit(keys, args)
  local h, p, st, z = {}, {}, {}, {}
  local now = redis.call('TIME')[1]
  for i = 1, #args, 3 do
    local id = args[i]
    h[#h + 1], h[#h + 2] = id, args[i + 1]
    p[#p + 1], p[#p + 2] = id, args[i + 2]
    st[#st + 1], st[#st + 2] = id, 'ready'
    z[#z + 1], z[#z + 2] = now, id
  end
  redis.call('HSET', keys[1], unpack(h))
  redis.call('HSET', keys[2], unpack(p))
  redis.call('HSET', keys[3], unpack(st))
  redis.call('ZADD', keys[4], unpack(z))
  redis.call('HINCRBY', keys[5], 'submitted', #args / 3)
  redis.call('PUBLISH', keys[5], 'leader')
  return #args / 3
end

-- KEYS: state ready queue swarms; ARGV: swarm, most tasks
local function dispatch(keys, args)
  local sid = args[1]
  local popped = redis.call('ZPOPMIN', keys[2], tonumber(args[2]))
  if #popped == 0 then return 0 end
  local st, q = {}, {}
  for i = 1, #popped, 2 do
    st[#st + 1], st[#st + 2] = popped[i], 'assigned:' .. sid
    q[#q + 1], q[#q + 2] = popped[i + 1], popped[i]
  end
  redis.call('HSET', keys[1], unpack(st))
  redis.call('ZADD', keys[3], unpack(q))
  redis.call('HINCRBY', keys[4], sid, #popped / 2)
  redis.call('PUBLISH', keys[4], sid)
  return #popped / 2
end

-- KEYS: state queue leases tasks payload stats; ARGV: worker, most tasks, lease ms
-- returns {ids, records, payloads}
local function claim(keys, args)
  local wid = args[1]
  local popped = redis.call('ZPOPMIN', keys[2], tonumber(args[2]))
  if #popped == 0 then return {} end
  local t = redis.call('TIME')
  local deadline = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(args[3])
  local ids, st, l = {}, {}, {}
  for i = 1, #popped, 2 do
    local id = popped[i]
    ids[#ids + 1] = id
    st[#st + 1], st[#st + 2] = id, 'running:' .. wid
    l[#l + 1], l[#l + 2] = deadline, id
  end
  redis.call('HSET', keys[1], unpack(st))
  redis.call('ZADD', keys[3], unpack(l))
  local records = redis.call('HMGET', keys[4], unpack(ids))
  local payloads = redis.call('HMGET', keys[5], unpack(ids))
  redis.call('HINCRBY', keys[6], 'executions', #ids)
  return {ids, records, payloads}
end

-- KEYS: state leases result completions stats swarms; ARGV: worker, swarm, (id, result)...
-- returns 'completed' or 'stale' per task
local function finish(keys, args)
  local wid, sid = args[1], args[2]
  local ids = {}
  for i = 3, #args, 2 do ids[#ids + 1] = args[i] end
  local states = redis.call('HMGET', keys[1], unpack(ids))
  local st, r, done, out = {}, {}, {}, {}
  local held = 'running:' .. wid
  for k, id in ipairs(ids) do
    if states[k] == held then
      st[#st + 1], st[#st + 2] = id, 'completed'
      r[#r + 1], r[#r + 2] = id, args[2 + 2 * k]
      done[#done + 1] = id
      out[k] = 'completed'
    else
      out[k] = 'stale'
    end
  end
  if #done > 0 then
    redis.call('HSET', keys[1], unpack(st))
    redis.call('HSET', keys[3], unpack(r))
    redis.call('ZREM', keys[2], unpack(done))
    redis.call('XADD', keys[4], 'MAXLEN', '~', 10000, '*', 'tasks', table.concat(done, ' '),
               'worker', wid)
    redis.call('HINCRBY', keys[5], 'completed', #done)
    redis.call('HINCRBY', keys[6], sid, -#done)
  end
  return out
end

redis.register_function('floor_submit', submit)
redis.register_function('floor_dispatch', dispatch)
redis.register_function('floor_claim', claim)
redis.register_function('floor_finish', finish)
