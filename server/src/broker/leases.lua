-- A user's open connections over every node, for the per-user cap. Each is a lease that its node renews;
-- the leases of a node that died without releasing them expire, on Redis's clock.
--
-- KEYS: leases (sorted set: node \n conn -> expiry, unix ms)
-- ARGV: 'take' | 'renew', member (node \n conn), ttl (ms), most leases ('take' only)
-- Returns 1 when taken (or renewed), 0 when the user already holds the most.
local leases = KEYS[1]
local op, member, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
if op == 'take' and not redis.call('ZSCORE', leases, member)
    and redis.call('ZCARD', leases) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', leases, now + ttl, member)
redis.call('PEXPIRE', leases, ttl)
return 1
