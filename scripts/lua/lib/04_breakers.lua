-- multiswarm Lua prelude, part 4: the circuit breaker state machine (docs/resilience.md).
-- Breaker records are JSON in the breakers hash; acquire_breaker.lua and record_breaker.lua
-- both apply the lazy, time-driven transitions first, on the server clock.

local function breaker_open(b, now, reason)
  b.state = 'open'; b.gen = b.gen + 1; b.opened_ms = now; b.changed_ms = now
  b.opens = b.opens + 1; b.failures = 0; b.successes = 0; b.trials = 0
  if reason then b.last_error = reason end
end

-- half_open with a trial unreported for trial_timeout_ms -> open;
-- open for open_ms -> half_open
local function breaker_advance(b, now)
  if b.state == 'half_open' and b.trials > b.successes
     and now >= b.trial_ms + b.trial_timeout_ms then
    breaker_open(b, now, 'trial call unreported for ' .. b.trial_timeout_ms .. ' ms')
  end
  if b.state == 'open' and now >= b.opened_ms + b.open_ms then
    b.state = 'half_open'; b.gen = b.gen + 1; b.half_open_ms = now; b.changed_ms = now
    b.trials = 0; b.successes = 0
  end
end
