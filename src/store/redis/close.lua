-- Close a lead: release its rep's load (never below 0), mark the record closed with its
-- outcome, and append the outcome with the lead's context to the pool's outcome stream.
-- A queued lead is withdrawn from the queue. Closing again with the same outcome is a no-op.
-- KEYS: 1 lead record, 2 rep table (records of layout S, as in claim.lua), 3 queue,
--       4 outcome stream, 5 slots (rep id -> "slot:generation")
-- ARGV: 1 outcome, 2 now (ms), 3 lead id, 4 stream max length
local S = '<i4i4i4i4i4di4'
local rec = redis.call('HMGET', KEYS[1], 'state', 'rep', 'prob', 'seg', 'at', 'cat', 'outcome', 'qm', 'ctx')
local state = rec[1]
if not state then
  return {'missing'}
end
if state == 'closed' then
  if rec[7] == ARGV[1] then
    return {'closed', rec[2] or '', rec[3], rec[4], rec[5], rec[6], rec[7]}
  end
  return {'conflict', rec[7]}
end
local rep = rec[2] or ''
if state == 'open' then
  local si = redis.call('HGET', KEYS[5], rep)
  local slot, generation = string.match(si or '', '^(%d+):(%d+)$')
  if slot then
    local v = redis.call('GETRANGE', KEYS[2], slot * 32, slot * 32 + 31)
    if #v == 32 then
      local cap, quota, load, period, count, last, gen = struct.unpack(S, v)
      if gen == tonumber(generation) then
        redis.call('SETRANGE', KEYS[2], slot * 32,
          struct.pack(S, cap, quota, math.max(load - 1, 0), period, count, last, gen))
      end
    end
  end
else
  redis.call('ZREM', KEYS[3], rec[8])
  redis.call('HDEL', KEYS[1], 'qm')
  rep = ''
  redis.call('HSET', KEYS[1], 'at', ARGV[2])
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'rep', rep, 'cat', ARGV[2], 'outcome', ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
  'lead', ARGV[3], 'rep', rep, 'outcome', ARGV[1], 'closed_at', ARGV[2], 'ctx', rec[9] or '{}')
local at = redis.call('HGET', KEYS[1], 'at')
return {'ok', rep, rec[3], rec[4], at, ARGV[2], ARGV[1]}
