-- Applies retention to one room: drops the messages beyond the newest `count` (0: no limit) and those
-- older than `cutoff` (unix ms; 0: no limit), at most `budget` per call, with their client ids.
-- KEYS: log, ids
-- ARGV: count, cutoff, budget
-- Returns how many messages went; the caller calls again while it returns `budget`.
local log, ids = KEYS[1], KEYS[2]
local count, cutoff, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local deleted = 0

local function drop(entry)
  local fields = entry[2]
  local f = {}
  for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
  if f.id and f.id ~= '' then
    redis.call('HDEL', ids, f.s .. '\n' .. f.id)
  end
  redis.call('XDEL', log, entry[1])
  deleted = deleted + 1
end

if count > 0 then
  local excess = redis.call('XLEN', log) - count
  if excess > 0 then
    for _, e in ipairs(redis.call('XRANGE', log, '-', '+', 'COUNT', math.min(excess, budget))) do
      drop(e)
    end
  end
end
while cutoff > 0 and deleted < budget do
  local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', math.min(100, budget - deleted))
  local stop = #oldest == 0
  for _, e in ipairs(oldest) do
    local ts = nil
    for i = 1, #e[2], 2 do if e[2][i] == 'ts' then ts = tonumber(e[2][i + 1]) end end
    if ts and ts < cutoff then drop(e) else stop = true break end
  end
  if stop then break end
end
return deleted
