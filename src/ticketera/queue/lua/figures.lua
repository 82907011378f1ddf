-- KEYS: users, line, prequeue, active, counters, admissions, released. ARGV: now_ms.
-- Returns {waiting, prequeue, active, admitted_total, released (0/1), admissions...}.
local users, line, prequeue, active, counters, admissions, released =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
expire_overdue(users, active, tonumber(ARGV[1]))
local result = {
  redis.call('ZCARD', line),
  redis.call('SCARD', prequeue),
  redis.call('ZCARD', active),
  tonumber(redis.call('HGET', counters, 'admitted') or '0'),
  redis.call('EXISTS', released),
}
for _, item in ipairs(redis.call('LRANGE', admissions, 0, 599)) do
  result[#result + 1] = item
end
return result
