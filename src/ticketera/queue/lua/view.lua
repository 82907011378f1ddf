-- KEYS: users, line, prequeue. ARGV: user. Returns {entry, rank} (rank -1 unless waiting) or false.
local raw = entry_of(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
if not raw then return false end
local rank = -1
if parse(raw) == 'waiting' then
  rank = redis.call('ZRANK', KEYS[2], ARGV[1]) or -1
end
return {raw, rank}
