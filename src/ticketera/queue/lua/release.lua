-- KEYS: line, prequeue, released. ARGV: the pre-queue in its drawn order.
-- Returns 1 when released (now or before), 0 when ARGV is not exactly the pre-queue (caller retries).
local line, prequeue, released = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', released) == 1 then return 1 end
if redis.call('SCARD', prequeue) ~= #ARGV then return 0 end
for _, user in ipairs(ARGV) do
  if redis.call('SISMEMBER', prequeue, user) == 0 then return 0 end
end
for position, user in ipairs(ARGV) do
  redis.call('ZADD', line, position, user)
end
redis.call('DEL', prequeue)
redis.call('SET', released, '1')
return 1
