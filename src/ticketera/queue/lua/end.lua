-- KEYS: users, line, prequeue, active. ARGV: user, final state ('left' or 'done').
-- Returns 1 when the user's turn ended now, 0 when there was nothing to end.
local users, line, prequeue, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local raw = entry_of(users, line, prequeue, ARGV[1])
if not raw then return 0 end
local state, sequence = parse(raw)
if finished(state) then return 0 end
redis.call('ZREM', line, ARGV[1])
redis.call('SREM', prequeue, ARGV[1])
redis.call('ZREM', active, ARGV[1])
redis.call('HSET', users, ARGV[1], ARGV[2] .. '|' .. sequence .. '|0')
return 1
