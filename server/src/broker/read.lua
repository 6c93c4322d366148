-- One page of a room's history after (or before) a seq, with the room's bounds, read atomically.
-- KEYS: meta, log
-- ARGV: seq, count, and optionally 'before' for the newest entries below seq (newest first)
-- Returns {head, first retained seq (head + 1 when none), entries...} where each entry is XRANGE's
-- {id, {field, value, ...}}.
local head = tonumber(redis.call('HGET', KEYS[1], 'head') or '0')
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first_seq = head + 1
if #first == 1 then
  first_seq = tonumber(string.match(first[1][1], '^(%d+)'))
end
local out = {head, first_seq}
if tonumber(ARGV[2]) > 0 then
  local entries
  if ARGV[3] == 'before' then
    entries = redis.call('XREVRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '-', 'COUNT', ARGV[2])
  else
    entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
  end
  for i = 1, #entries do out[#out + 1] = entries[i] end
end
return out
