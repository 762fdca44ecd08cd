-- Close a lead: release its rep's load (never below 0), mark the record closed with its
-- outcome, and append the outcome with the lead's context to the pool's outcome stream.
-- A queued lead is withdrawn from the queue and its group queue. Closing again with the same
-- outcome is a no-op.
-- KEYS: 1 lead record, 2 rep table (records of layout S, as in claim.lua), 3 queue,
--       4 outcome stream, 5 slots (rep id -> "slot:generation"), 6 the lead's group queue
-- ARGV: 1 outcome, 2 now (ms), 3 lead id, 4 stream max length
local S = '<i4i4di4i4i4i4i4i4i4i4i4i4i4i4i4'
local LEN = 68
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
    local v = redis.call('GETRANGE', KEYS[2], slot * LEN, slot * LEN + LEN - 1)
    if #v == LEN then
      local o = {struct.unpack(S, v)}
      if o[4] == tonumber(generation) then
        o[2] = math.max(o[2] - 1, 0)
        redis.call('SETRANGE', KEYS[2], slot * LEN, struct.pack(S, o[1], o[2], o[3], o[4],
          o[5], o[6], o[7], o[8], o[9], o[10], o[11], o[12], o[13], o[14], o[15], o[16]))
      end
    end
  end
else
  redis.call('ZREM', KEYS[3], rec[8])
  redis.call('ZREM', KEYS[6], rec[8])
  redis.call('HDEL', KEYS[1], 'qm', 'grp')
  rep = ''
  redis.call('HSET', KEYS[1], 'at', ARGV[2])
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'rep', rep, 'cat', ARGV[2], 'outcome', ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
  'lead', ARGV[3], 'rep', rep, 'outcome', ARGV[1], 'closed_at', ARGV[2], 'ctx', rec[9] or '{}')
local at = redis.call('HGET', KEYS[1], 'at')
return {'ok', rep, rec[3], rec[4], at, ARGV[2], ARGV[1]}
