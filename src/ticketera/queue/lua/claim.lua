-- KEYS: users, active. ARGV: user, now_ms, access_ms. Returns the shopping entry, or false.
local users, active = KEYS[1], KEYS[2]
local user, now, access_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('HGET', users, user)
if not raw then return false end
local state, sequence, deadline = parse(raw)
if (state ~= 'admitted' and state ~= 'shopping') or deadline <= now then return false end
if state == 'shopping' then return raw end
local until_ms = now + access_ms
local entry = 'shopping|' .. sequence .. '|' .. whole(until_ms)
redis.call('HSET', users, user, entry)
redis.call('ZADD', active, until_ms, user)
return entry
