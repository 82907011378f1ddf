-- KEYS: users, line, prequeue, late_joins, released, active
-- ARGV: user, now_ms, on_sale_ms ('' when none), max_waiting, late_join_base
-- Returns {entry, outcome, rank}: outcome 1 created, 0 already there, 2 refused because the line is
-- full; rank is the number of users ahead when waiting, else -1.
local users, line, prequeue, late_joins, released, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local user, now, on_sale = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_waiting, base = tonumber(ARGV[4]), tonumber(ARGV[5])

expire_overdue(users, active, now)
local current = entry_of(users, line, prequeue, user)
local function rank_of(entry)
  if string.sub(entry, 1, 8) == 'waiting|' then
    return redis.call('ZRANK', line, user) or -1
  end
  return -1
end

if current and not finished(parse(current)) then
  return {current, 0, rank_of(current)}
end
if redis.call('ZCARD', line) + redis.call('SCARD', prequeue) >= max_waiting then
  return {current or '', 2, -1}
end
local entry
if redis.call('EXISTS', released) == 0 and on_sale and now < on_sale then
  redis.call('SADD', prequeue, user)
  entry = 'prequeue|0|0'
else
  local sequence = base + redis.call('INCR', late_joins)
  redis.call('ZADD', line, sequence, user)
  entry = 'waiting|' .. whole(sequence) .. '|0'
end
if current then
  -- A finished turn's entry makes way for the new one, which lives in the line or pre-queue.
  redis.call('HDEL', users, user)
end
return {entry, 1, rank_of(entry)}
