-- Shared by every waiting-room script (prepended to each). Entries are "state|sequence|deadline_ms".
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
