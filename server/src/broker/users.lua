-- Accounts and sign-in sessions, each operation atomic.
-- Keys: user:<name key> (hash: name, hash, created), session:<sid> (hash: user, expires, revoked; expires
-- with the token), sessions:<name> (set of the user's sids), revoked (zset: sid -> token expiry, ms).
-- KEYS[1]: the user key; ARGV[1]: op; the rest by op:
--   register  ARGV name, hash, now                               -> 1 | 0 (name taken)
--   set-hash  ARGV name, old hash, new hash                      -> 1 | 0 (changed meanwhile)
--   delete    ARGV name, hash                                    -> 1 | 0
--   start     KEYS[2] session, KEYS[3] sessions; ARGV name, hash, sid, expires, prefix -> 1 | 0
--   revoke    KEYS[2] session, KEYS[3] revoked; ARGV sid, control -> expiry | false
--   revoke-all KEYS[2] sessions, KEYS[3] revoked; ARGV name, control, prefix -> {sid, expiry, ...}
local op = ARGV[1]
if op == 'register' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  redis.call('HSET', KEYS[1], 'name', ARGV[2], 'hash', ARGV[3], 'created', ARGV[4])
  return 1
elseif op == 'set-hash' then
  if redis.call('HGET', KEYS[1], 'name') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'hash') ~= ARGV[3] then
    return 0
  end
  redis.call('HSET', KEYS[1], 'hash', ARGV[4])
  return 1
elseif op == 'delete' then
  if redis.call('HGET', KEYS[1], 'name') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'hash') ~= ARGV[3] then
    return 0
  end
  redis.call('DEL', KEYS[1])
  return 1
elseif op == 'start' then
  if redis.call('HGET', KEYS[1], 'name') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'hash') ~= ARGV[3] then
    return 0
  end
  -- Expired sessions are no use to anyone: clear them out of the set as new ones come in.
  for _, sid in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if redis.call('EXISTS', ARGV[6] .. sid) == 0 then redis.call('SREM', KEYS[3], sid) end
  end
  redis.call('HSET', KEYS[2], 'user', ARGV[2], 'expires', ARGV[5], 'revoked', 0)
  redis.call('PEXPIREAT', KEYS[2], ARGV[5])
  redis.call('SADD', KEYS[3], ARGV[4])
  return 1
elseif op == 'revoke' then
  local expires = redis.call('HGET', KEYS[2], 'expires')
  if not expires then return false end
  redis.call('HSET', KEYS[2], 'revoked', 1)
  redis.call('ZADD', KEYS[3], expires, ARGV[2])
  redis.call('PUBLISH', ARGV[3], 'session\n' .. ARGV[2] .. '\n' .. expires)
  return expires
elseif op == 'revoke-all' then
  local out = {}
  for _, sid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local key = ARGV[4] .. sid
    local expires = redis.call('HGET', key, 'expires')
    if expires then
      redis.call('HSET', key, 'revoked', 1)
      redis.call('ZADD', KEYS[3], expires, sid)
      redis.call('PUBLISH', ARGV[3], 'session\n' .. sid .. '\n' .. expires)
      out[#out + 1] = sid
      out[#out + 1] = expires
    end
  end
  redis.call('PUBLISH', ARGV[3], 'user\n' .. ARGV[2])
  return out
end
return redis.error_reply('unknown user operation ' .. op)
