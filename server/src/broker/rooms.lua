-- Room changes, each atomic, each announced on the control channel so that every node reloads the
-- room's access and takes out whoever may no longer be in it.
-- KEYS: meta, members
-- ARGV: op ('create' | 'member' | 'forget'), control channel, room, then
--   create: owner, private ('1' | '0')           -> 1 created, 0 the name is taken
--   member: user, '1' to add | '0' to remove      -> 1 done, 0 the room is not private
--   forget: user (drop as member and as owner)   -> 1
local meta, members = KEYS[1], KEYS[2]
local op, control, room = ARGV[1], ARGV[2], ARGV[3]
local result = 1
if op == 'create' then
  if redis.call('EXISTS', meta) == 1 then
    return 0
  end
  redis.call('HSET', meta, 'head', 0, 'created', 1, 'owner', ARGV[4], 'private', ARGV[5])
  if ARGV[5] == '1' then
    redis.call('SADD', members, ARGV[4])
  end
elseif op == 'member' then
  if redis.call('HGET', meta, 'private') ~= '1' then
    return 0
  end
  if ARGV[5] == '1' then
    redis.call('SADD', members, ARGV[4])
  else
    redis.call('SREM', members, ARGV[4])
  end
elseif op == 'forget' then
  redis.call('SREM', members, ARGV[4])
  if redis.call('HGET', meta, 'owner') == ARGV[4] then
    redis.call('HDEL', meta, 'owner')
  end
else
  return redis.error_reply('unknown room operation ' .. op)
end
redis.call('PUBLISH', control, 'room\n' .. room)
return result
