-- KEYS: users, line, active, bucket, admissions, last_tick, counters
-- ARGV: now_ms, admit_per_minute, max_active, claim_ms, paused (0/1), tick, burst
-- Returns the users admitted, in line order.
local users, line, active, bucket, admissions, last_tick, counters =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now, rate, max_active = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local claim_ms, paused, tick, burst = tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6], tonumber(ARGV[7])

expire_overdue(users, active, now)
-- One step per tick, however many replicas run the ticker; a replica whose clock lags behind
-- (an older tick number) never steps again.
local last = tonumber(redis.call('GET', last_tick))
if last and tonumber(tick) <= last then return {} end
redis.call('SET', last_tick, tick, 'PX', 3600000)

local tokens = tonumber(redis.call('HGET', bucket, 'tokens'))
local tokens_at = tonumber(redis.call('HGET', bucket, 'at'))
if not tokens_at then
  tokens = burst
  tokens_at = now
else
  tokens = math.min(burst, tokens + math.max(0, now - tokens_at) * rate / 60000)
  -- The bucket's time never moves back, so no stretch of time is refilled twice.
  tokens_at = math.max(tokens_at, now)
end
local count = 0
if not paused then
  count = math.min(math.floor(tokens), max_active - redis.call('ZCARD', active), redis.call('ZCARD', line))
end
if count <= 0 then
  redis.call('HSET', bucket, 'tokens', tostring(tokens), 'at', whole(tokens_at))
  return {}
end
local popped = redis.call('ZPOPMIN', line, count)
local deadline = now + claim_ms
local admitted = {}
for i = 1, #popped, 2 do
  local user, sequence = popped[i], popped[i + 1]
  redis.call('HSET', users, user, 'admitted|' .. sequence .. '|' .. whole(deadline))
  redis.call('ZADD', active, deadline, user)
  admitted[#admitted + 1] = user
end
redis.call('HSET', bucket, 'tokens', tostring(tokens - #admitted), 'at', whole(tokens_at))
redis.call('LPUSH', admissions, whole(now) .. ':' .. #admitted)
redis.call('LTRIM', admissions, 0, 599)
redis.call('HINCRBY', counters, 'admitted', #admitted)
return admitted
