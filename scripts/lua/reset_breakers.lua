-- reset_breakers: force breakers closed (operator action); in-flight permits become stale.
-- KEYS[1] - breakers hash ({ns}:breakers, breaker name -> JSON record)
-- ARGV[1..n] - names of the breakers to reset; none = every breaker
-- returns the names reset (names that do not exist are skipped)
local names = ARGV
if #names == 0 then names = redis.call('HKEYS', KEYS[1]) end
local now = now_ms()
local done = {}
for _, name in ipairs(names) do
  local b = hget_json(KEYS[1], name)
  if b then
    b.state = 'closed'; b.gen = b.gen + 1; b.changed_ms = now
    b.failures = 0; b.successes = 0; b.trials = 0
    hset_json(KEYS[1], name, b)
    done[#done + 1] = name
  end
end
return done
