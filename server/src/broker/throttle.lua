-- A token bucket shared by every node (failed sign-ins per account name), on Redis's clock.
--
-- KEYS: bucket (hash: tokens, at (unix ms))
-- ARGV: rate (tokens per second), burst, cost (0: only look whether one token is there)
-- Returns 0 when allowed (and the cost taken), else how many ms until it would be.
local bucket = KEYS[1]
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', bucket, 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local need = math.min(math.max(cost, 1), burst)
if tokens < need then
  return math.max(1, math.ceil((need - tokens) * 1000 / rate))
end
if cost > 0 then
  tokens = tokens - math.min(cost, burst)
  redis.call('HSET', bucket, 'tokens', tostring(tokens), 'at', now)
  -- Gone once full again: a full bucket and no bucket mean the same.
  redis.call('PEXPIRE', bucket, math.ceil((burst - tokens) * 1000 / rate) + 1000)
end
return 0
