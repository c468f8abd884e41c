-- record_breaker: report how a permitted call ended, moving the shared breaker if it must.
-- closed: a failure counts (failure_threshold in a row -> open), a success clears the count;
-- half_open: a success counts (success_threshold -> closed), a failure reopens at once, a
-- release gives the trial permit back (the call was cancelled, it proved nothing).
-- A permit from an earlier state (gen differs: the breaker moved or was reset since) is ignored.
-- KEYS[1] - breakers hash ({ns}:breakers, breaker name -> JSON record)
-- ARGV[1] - breaker name
-- ARGV[2] - gen of the permit (acquire_breaker.lua)
-- ARGV[3] - outcome: success | failure | release
-- ARGV[4] - error text of a failure (kept, at most 200 bytes, as last_error)
-- returns {state, gen, counted} (counted 1 when the outcome was applied, 0 when stale);
--         error NOT_FOUND, BAD_REQUEST
local name, outcome = ARGV[1], ARGV[3]
if outcome ~= 'success' and outcome ~= 'failure' and outcome ~= 'release' then
  return fail('BAD_REQUEST', 'unknown outcome ' .. tostring(outcome))
end
local b = hget_json(KEYS[1], name)
if not b then return fail('NOT_FOUND', 'breaker ' .. name) end
local now = now_ms()
local before = b.gen

local function open(reason) breaker_open(b, now, reason) end

breaker_advance(b, now)  -- lazy, time-driven transitions (lib/04_breakers.lua)

local counted = 0
if tonumber(ARGV[2]) == before and b.gen == before then
  counted = 1
  local err = string.sub(ARGV[4] or '', 1, 200)
  if b.state == 'closed' then
    if outcome == 'failure' then
      b.failures = b.failures + 1
      b.last_error = err
      if b.failures >= b.failure_threshold then open(nil) end
    elseif outcome == 'success' then
      b.failures = 0
    end
  elseif b.state == 'half_open' then
    if outcome == 'failure' then
      open(err)
    elseif outcome == 'success' then
      b.successes = b.successes + 1
      if b.successes >= b.success_threshold then
        b.state = 'closed'; b.gen = b.gen + 1; b.changed_ms = now
        b.failures = 0; b.successes = 0; b.trials = 0
      end
    else
      b.trials = math.max(b.successes, b.trials - 1)
    end
  else
    counted = 0
  end
end
if counted == 1 or b.gen ~= before then hset_json(KEYS[1], name, b) end
return {b.state, b.gen, counted}
