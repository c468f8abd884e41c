-- acquire_breaker: ask a circuit breaker shared by every process for permission to make one call.
-- The breaker's state machine (docs/resilience.md): closed -> open after failure_threshold
-- consecutive failures; open -> half_open once open_ms have passed (evaluated here, lazily, on the
-- server clock); half_open admits exactly half_open_calls trial calls (a permit counter); trial
-- calls left unreported for trial_timeout_ms count as a failure (-> open).
-- KEYS[1] - breakers hash ({ns}:breakers, breaker name -> JSON record, see multiswarm/breakers.py)
-- ARGV[1] - breaker name
-- returns {1, state, gen, 0} when the call may proceed (state 'closed': a normal call,
--         'half_open': one of the trial calls; gen identifies the state the permit belongs to),
--         {0, state, gen, retry_after_ms} when refused (open, or every trial permit taken);
--         error NOT_FOUND when the breaker does not exist
local name = ARGV[1]
local b = hget_json(KEYS[1], name)
if not b then return fail('NOT_FOUND', 'breaker ' .. name) end
local now = now_ms()
local before = b.gen

local function open(reason) breaker_open(b, now, reason) end

breaker_advance(b, now)  -- lazy, time-driven transitions (lib/04_breakers.lua)

local reply
if b.state == 'closed' then
  reply = {1, 'closed', b.gen, 0}
elseif b.state == 'half_open' and b.trials < b.half_open_calls then
  b.trials = b.trials + 1
  b.trial_ms = now
  reply = {1, 'half_open', b.gen, 0}
elseif b.state == 'half_open' then
  reply = {0, 'half_open', b.gen, math.max(1, b.trial_ms + b.trial_timeout_ms - now)}
else
  reply = {0, 'open', b.gen, math.max(1, b.opened_ms + b.open_ms - now)}
end
if b.gen ~= before or reply[2] == 'half_open' and reply[1] == 1 then hset_json(KEYS[1], name, b) end
return reply
