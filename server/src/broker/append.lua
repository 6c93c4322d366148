-- Stores one chat message in a room, atomically: checks a private room's membership, recognises a
-- resent client id, assigns the room's next seq, appends to the room's stream, and publishes it.
-- Because all of this is one script, Redis publishes a room's messages in seq order.
--
-- KEYS: meta (hash: head, created, private, owner), log (stream), ids (hash: sender \n id -> seq),
--       members (set)
-- ARGV: sender, text, timestamp (unix ms), client id ('' for none), channel, origin (node \n conn)
-- Returns {'new', seq} | {'dup', seq, sender, text, ts, id} | {'forbidden'}
local meta, log, ids, members = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sender, text, ts, cid, channel, origin = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

if redis.call('HGET', meta, 'private') == '1' and redis.call('SISMEMBER', members, sender) == 0 then
  return {'forbidden'}
end
local idkey = sender .. '\n' .. cid
if cid ~= '' then
  local seq = redis.call('HGET', ids, idkey)
  if seq then
    local found = redis.call('XRANGE', log, seq .. '-0', seq .. '-0')
    if #found == 1 then
      local f = {}
      local fields = found[1][2]
      for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
      return {'dup', seq, f.s, f.t, f.ts, f.id}
    end
  end
end
local seq = redis.call('HINCRBY', meta, 'head', 1)
redis.call('XADD', log, seq .. '-0', 's', sender, 't', text, 'ts', ts, 'id', cid, 'o', origin)
if cid ~= '' then
  redis.call('HSET', ids, idkey, seq)
end
-- The payload's first line is its format, its second the seq, in every version (see subscriber.rs).
redis.call('PUBLISH', channel, '1\n' .. seq .. '\n' .. origin .. '\n' .. ts .. '\n' .. sender .. '\n' .. cid .. '\n' .. text)
return {'new', seq}
