-- Close a lead: release its rep's load (never below 0), mark the record closed with its
-- outcome, and append the outcome with the lead's context to the pool's outcome stream.
-- A queued lead is withdrawn from the queue and its group queue. Closing again with the same
-- outcome is a no-op. (Prelude: events.lua.)
-- KEYS: 1 lead record, 2 rep table (records of layout S, as in claim.lua), 3 queue,
--       4 outcome stream, 5 slots (rep id -> "slot:generation"), 6 the lead's group queue,
--       7 event stream, 8 event counter, 9 deadlines, 10 held leads, 11 the pool's
--       report-counter prefix
-- ARGV: 1 outcome, 2 now (ms), 3 lead id, 4 outcome stream max length, 5 event stream max
--       length, 6 event max age (ms), 7 "expire" to close only a lead still queued for its
--       whole queue TTL (else {'skip'}), "" otherwise, 8 report day of now, 9 the deal's value
--       ('' for none)
-- An imported lead (imp) holds no capacity, so closing it frees none.
local rec = redis.call('HMGET', KEYS[1], 'state', 'rep', 'prob', 'seg', 'at', 'cat', 'outcome', 'qm', 'ctx', 'ct', 'br', 'qttl',
  'ad', 'ev', 'imp')
RPT.base, RPT.today = KEYS[11], ARGV[8]
local state = rec[1]
if ARGV[7] == 'expire' then
  local qttl = tonumber(rec[12] or '0') or 0
  if state ~= 'queued' or qttl <= 0 or tonumber(rec[5]) + qttl > tonumber(ARGV[2]) then
    -- Taken, closed, or queued again later (its member then carries the later deadline).
    if state ~= 'queued' then redis.call('ZREM', KEYS[9], 'q:' .. ARGV[3]) end
    return {'skip'}
  end
  redis.call('ZREM', KEYS[9], 'q:' .. ARGV[3])
end
if not state then
  return {'missing'}
end
if state == 'closed' then
  if rec[7] == ARGV[1] then
    return {'closed', rec[2] or '', rec[3], rec[4], rec[5], rec[6], rec[7], rec[10] or '', rec[11] or ''}
  end
  return {'conflict', rec[7]}
end
local rep = rec[2] or ''
if state == 'open' or state == 'offered' then
  if rec[15] ~= '1' then unload(KEYS[2], KEYS[5], rep) end
  redis.call('ZREM', KEYS[10], held(rep, ARGV[3]))
  redis.call('ZREM', KEYS[9], 'o:' .. ARGV[3], 's:' .. ARGV[3], 'q:' .. ARGV[3])
  redis.call('HDEL', KEYS[1], 'dl')
else
  redis.call('ZREM', KEYS[3], rec[8])
  redis.call('ZREM', KEYS[6], rec[8])
  redis.call('ZREM', KEYS[9], 'q:' .. ARGV[3])
  redis.call('HDEL', KEYS[1], 'qm')
  rep = ''
  redis.call('HSET', KEYS[1], 'at', ARGV[2])
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'rep', rep, 'cat', ARGV[2], 'outcome', ARGV[1])
if rec[15] ~= '1' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
    'lead', ARGV[3], 'rep', rep, 'outcome', ARGV[1], 'closed_at', ARGV[2], 'ctx', rec[9] or '{}',
    'at', rep ~= '' and rec[5] or '', 'ct', rec[10] or '', 'v', ARGV[9])
end
local at = redis.call('HGET', KEYS[1], 'at')
emit(KEYS[7], KEYS[8], ARGV[5], ARGV[6], ARGV[2], {k = 'closed', l = ARGV[3], r = rep,
  s = 'closed', h = rep, p = rec[3], g = rec[4], a = at, o = ARGV[1], w = ARGV[1]})
rpt_tally({k = 'closed', rep = rep, seg = rec[4], p = rec[3], ev = rec[14], o = ARGV[1], v = ARGV[9],
  bf = {rep = rep, day = rec[13] or ARGV[8], at = rec[5]}, now = ARGV[2]})
return {'ok', rep, rec[3], rec[4], at, ARGV[2], ARGV[1], rec[10] or '', rec[11] or ''}
