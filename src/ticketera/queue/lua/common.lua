-- Shared by every waiting-room script (prepended to each). Entries are "state|sequence|deadline_ms".
-- A user in the pre-queue set or in the line is not in the users hash: their entry is derived from
-- that membership (the line's score is their sequence). The line is where the 200,000 of an on-sale
-- spend their time, and a second copy of each of them in the hash cost a third of Redis' memory.
-- The hash holds only those the line let through (admitted, shopping) and those whose turn ended.
-- Lua numbers are doubles: format whole numbers with %.0f so large ones never print as 1e+12.
local function whole(n) return string.format('%.0f', n) end

local function parse(raw)
  local state, sequence, deadline = string.match(raw, '^(%a+)|(%d+)|(%d+)$')
  return state, sequence, tonumber(deadline)
end

-- Admitted and shopping users whose deadline has passed stop being active and become expired.
local function expire_overdue(users_key, active_key, now)
  local overdue = redis.call('ZRANGEBYSCORE', active_key, '-inf', now)
  for _, user in ipairs(overdue) do
    local raw = redis.call('HGET', users_key, user)
    if raw then
      local _, sequence, deadline = parse(raw)
      redis.call('HSET', users_key, user, 'expired|' .. sequence .. '|' .. whole(deadline))
    end
  end
  if #overdue > 0 then
    redis.call('ZREMRANGEBYSCORE', active_key, '-inf', now)
  end
end

local function finished(state)
  return state == 'expired' or state == 'left' or state == 'done'
end

-- The user's entry, wherever it lives, or nil when the user never joined.
local function entry_of(users, line, prequeue, user)
  local raw = redis.call('HGET', users, user)
  if raw then return raw end
  local sequence = redis.call('ZSCORE', line, user)
  if sequence then return 'waiting|' .. whole(tonumber(sequence)) .. '|0' end
  if redis.call('SISMEMBER', prequeue, user) == 1 then return 'prequeue|0|0' end
  return nil
end
