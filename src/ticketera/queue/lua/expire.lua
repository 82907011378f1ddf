-- KEYS: every key of one event's waiting room
-- ARGV: at_ms
-- The line is forgotten at at_ms (Unix milliseconds): each key that exists gets that deadline.
local at = tonumber(ARGV[1])
local set = 0
for _, key in ipairs(KEYS) do
  set = set + redis.call('PEXPIREAT', key, at)
end
return set
