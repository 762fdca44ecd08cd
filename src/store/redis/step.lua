-- One step after a decision, atomically: accept, decline or expire an offer, mark a lead
-- contacted, or flag a first-touch SLA breach. (Prelude: events.lua.)
-- KEYS: 1 lead record, 2 rep table, 3 queue, 4 queue sequence, 5 slots, 6 the lead's group
--       queue, 7 event stream, 8 event counter, 9 deadlines, 10 held leads, 11 SLA breaches
--       per rep (hash), 12 the pool's report-counter prefix
-- ARGV: 1 op (accept | decline | expire | contacted | breach), 2 lead id, 3 rep id (empty:
--       whoever holds it), 4 now (ms), 5 reason, 6 event stream max length, 7 event max age,
--       8 report day of now
-- Replies: {'missing'}; {'refused', state, holder, exclusions, why}; {'skip'} (breach or
-- expire not due); {'ok', state, rep, prob, seg, at, '', '', deadline, contacted at, breached}
-- (a record as claim.lua's replay: closed at and outcome are empty for a held lead);
-- {'released', rep} (the lead is queued again).
local r = redis.call('HMGET', KEYS[1], 'state', 'rep', 'prob', 'seg', 'at', 'dl', 'ct', 'br',
  'sla', 'maxo', 'offers', 'excl', 'ad', 'ev')
RPT.base, RPT.today = KEYS[12], ARGV[8]
local state, rep = r[1], r[2] or ''
local op, id, who, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local nowv = tonumber(now)
if not state then
  return {'missing'}
end
local function refuse(why)
  return {'refused', state, rep, r[12] or '', why}
end
if state == 'queued' or state == 'closed' or (who ~= '' and who ~= rep) then
  return refuse('not held')
end
local dl, ct, br = r[6] or '', r[7] or '', r[8] or ''
local function ok(s)
  return {'ok', s, rep, r[3] or '', r[4] or '', r[5] or '', '', '', dl, ct, br}
end
local function event(kind, s, reason)
  emit(KEYS[7], KEYS[8], ARGV[6], ARGV[7], now, {k = kind, l = id, r = rep, s = s, h = rep,
    p = r[3], g = r[4], a = r[5], w = reason, d = dl})
  rpt_tally({k = kind, rep = rep, seg = r[4], p = r[3], ev = r[14], held = r[5], now = now})
end

if op == 'accept' then
  if state == 'open' then return ok('open') end
  redis.call('ZREM', KEYS[9], 'o:' .. id)
  dl = ''
  local sla = tonumber(r[9] or '0') or 0
  if sla > 0 then
    dl = tostring(nowv + sla)
    redis.call('ZADD', KEYS[9], dl, 's:' .. id)
    redis.call('HSET', KEYS[1], 'state', 'open', 'dl', dl)
  else
    redis.call('HSET', KEYS[1], 'state', 'open')
    redis.call('HDEL', KEYS[1], 'dl')
  end
  event('accepted', 'open', '')
  return ok('open')
end

if op == 'contacted' then
  if state == 'offered' then return refuse('offered') end
  if ct ~= '' then return ok('open') end
  ct, dl = now, ''
  redis.call('ZREM', KEYS[9], 's:' .. id)
  redis.call('HDEL', KEYS[1], 'dl')
  redis.call('HSET', KEYS[1], 'ct', now)
  event('contacted', 'open', '')
  return ok('open')
end

if op == 'breach' then
  if state ~= 'open' or ct ~= '' or dl == '' or tonumber(dl) > nowv then return {'skip'} end
  redis.call('ZREM', KEYS[9], 's:' .. id)
  redis.call('HDEL', KEYS[1], 'dl')
  redis.call('HSET', KEYS[1], 'br', '1')
  redis.call('HINCRBY', KEYS[11], rep, 1)
  dl, br = '', '1'
  event('sla_breached', 'open', ARGV[5])
  return ok('open')
end

-- decline | expire
if state ~= 'offered' then return refuse('accepted') end
if op == 'expire' and (dl == '' or tonumber(dl) > nowv) then return {'skip'} end
unload(KEYS[2], KEYS[5], rep)
redis.call('ZREM', KEYS[10], held(rep, id))
redis.call('ZREM', KEYS[9], 'o:' .. id)
local how = op == 'decline' and 'declined' or 'expired'
local reason = ARGV[5]
local offers, excl = tonumber(r[11] or '0') or 0, r[12] or ''
if offers >= (tonumber(r[10] or '1') or 1) then
  offers, excl = 0, ''
  if reason ~= '' then reason = reason .. '; ' end
  reason = reason .. 'max_offers reached: back in the queue with a clean slate'
else
  excl = excl .. rep .. '=' .. how .. '\n'
end
local seq = redis.call('INCR', KEYS[4])
local member = string.format('%020d', seq) .. ':' .. id
redis.call('ZADD', KEYS[3], -tonumber(r[3]), member)
redis.call('ZADD', KEYS[6], -tonumber(r[3]), member)
redis.call('HDEL', KEYS[1], 'dl')
redis.call('HSET', KEYS[1], 'state', 'queued', 'rep', '', 'qm', member, 'at', now,
  'excl', excl, 'offers', offers, 'ad', ARGV[8])
local qttl = tonumber(redis.call('HGET', KEYS[1], 'qttl') or '0') or 0
if qttl > 0 then
  redis.call('ZADD', KEYS[9], tonumber(now) + qttl, 'q:' .. id)
end
dl = ''
emit(KEYS[7], KEYS[8], ARGV[6], ARGV[7], now, {k = how, l = id, r = rep, s = 'queued',
  p = r[3], g = r[4], a = now, w = reason})
rpt_tally({k = how, rep = rep, seg = r[4], p = r[3], ev = r[14],
  bf = {rep = rep, day = r[13] or ARGV[8], at = r[5]}, af = {rep = '', day = ARGV[8]}, now = now})
return {'released', rep}
