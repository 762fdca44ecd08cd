-- Claim, drain-claim or reassign one lead, atomically, in one round trip.
-- Every key carries the pool's hash tag, so the script touches one cluster slot.
-- KEYS: 1 lead record, 2 rep table (one string: a LEN-byte record per slot, layout S:
--       capacity (-1: free slot), load, last ms (-1: never), generation, then quota (-1: none),
--       period and count for day, week, month, quarter), 3 queue (zset: score -probability,
--       member "<seq>:<lead id>"), 4 queue sequence, 5 slots (rep id -> "slot:generation";
--       read only to reassign), 6 the lead's group queue (same members, only leads that
--       require the same skills), 7 groups (group id -> required skills JSON), 8 event
--       stream, 9 event counter, 10 deadlines (zset: "o:<lead>" offer / "s:<lead>" SLA, by
--       deadline ms), 11 held leads (zset, all scores 0: "<rep>\0<lead>", for inboxes),
--       12 the pool's report-counter prefix (see events.lua)
-- ARGV: 1 mode ("new" | "queued" | "reassign"), 2 lead id, 3 now (ms), 4 probability,
--       5 segment, 6 context JSON, 7 rep the lead must be with (reassign), 8 candidates, best
--       match first, each: flag (1 opens a match-score group, 2 ties with the one before;
--       within a group Rust sorts by rep id), slot (2 digits), generation (3), periods: day
--       (3), week (2), month (2), quarter (2), ramp permille (2), #id, id. Digits are base 255
--       stored as digit + 1, so no byte is NUL and one string.byte call reads a candidate's
--       numbers: Lua pays per call and per string, and those (not bytes) set the claim rate.
--       9 group id, 10 group's required skills JSON, 11 offer timeout ms (0: assign directly;
--       reassign never offers), 12 SLA ms (0: none), 13 event stream max length, 14 event
--       max age ms, 15 event reason, 16 max offers, 17 queue TTL ms, 18 report day of now,
--       19 the lead's expected value
-- (Prelude: events.lua.)
-- A lower group is read only when nobody in the higher ones has room; with distinct match
-- scores that is usually one rep per claim. A candidate whose slot now holds another
-- generation (the directory was stale) is not eligible.
-- Returns strings only (Lua numbers would be truncated to integers on the way out); the last
-- two are how many candidates were read (a prefix of the list) and either the whole table
-- ("T" first) or the records of the candidates read, concatenated ("R" first).
local S = '<i4i4di4i4i4i4i4i4i4i4i4i4i4i4i4'
local LEN = 68
local H = 18
local mode, id, now = ARGV[1], ARGV[2], ARGV[3]
RPT.base, RPT.today = KEYS[12], ARGV[18]

local state, rep_now, qm, prob, seg
-- The holding before (its start and report day) and the expected value, for the counters.
local prev_at, prev_ad, ev = nil, nil, ARGV[19]
if mode == 'new' then
  state = redis.call('HGET', KEYS[1], 'state')
  if state then
    local r = redis.call('HMGET', KEYS[1], 'rep', 'prob', 'seg', 'at', 'cat', 'outcome', 'qm', 'dl', 'ct', 'br')
    local pos = ''
    if state == 'queued' then
      pos = tostring((redis.call('ZRANK', KEYS[3], r[7]) or -1) + 1)
    end
    return {'replay', state, r[1] or '', r[2] or '', r[3] or '', r[4] or '', r[5] or '', r[6] or '', pos,
      r[8] or '', r[9] or '', r[10] or ''}
  end
  prob, seg = ARGV[4], ARGV[5]
else
  local r = redis.call('HMGET', KEYS[1], 'state', 'rep', 'qm', 'prob', 'seg', 'at', 'ad', 'ev')
  state, rep_now, qm, prob, seg = r[1], r[2], r[3], r[4], r[5]
  prev_at, prev_ad, ev = r[6], r[7] or ARGV[18], r[8]
  if mode == 'queued' and state ~= 'queued' then
    return {'gone'}
  end
  if mode == 'reassign' and (state ~= 'open' or rep_now ~= ARGV[7]) then
    return {'conflict', state or '', rep_now or ''}
  end
end

local t = redis.call('GET', KEYS[2]) or ''
local function d2(a, b) return (a - 1) * 255 + b - 1 end
local function d3(a, b, c) return ((a - 1) * 255 + b - 1) * 255 + c - 1 end
local cands, pos, n = ARGV[8], 1, #ARGV[8]
local nread = 0
local best, b_len, b_slot, b_util, b_last, b_periods
while pos <= n and not best do
  -- One group: this candidate and the ones after it flagged 2.
  repeat
    local _, s1, s2, g1, g2, g3, a1, a2, a3, w1, w2, m1, m2, q1_, q2_, r1, r2, len =
      string.byte(cands, pos, pos + H - 1)
    if not len then pos = n + 1 break end
    local slot = d2(s1, s2)
    nread = nread + 1
    if slot * LEN + LEN <= #t then
      -- Locals, not a table per record: Lua pays per allocation, and a tied group reads all.
      local cap, load, last, gen, q1, p1, c1, q2, p2, c2, q3, p3, c3, q4, p4, c4 =
        struct.unpack(S, t, slot * LEN + 1)
      -- Digit arithmetic inline (a Lua function call per number cost ~20 % of a claim).
      if p1 ~= ((a1 - 1) * 255 + a2 - 1) * 255 + a3 - 1 then c1 = 0 end
      if p2 ~= (w1 - 1) * 255 + w2 - 1 then c2 = 0 end
      if p3 ~= (m1 - 1) * 255 + m2 - 1 then c3 = 0 end
      if p4 ~= (q1_ - 1) * 255 + q2_ - 1 then c4 = 0 end
      if r1 ~= 4 or r2 ~= 236 then
        -- Ramping (permille below 1000, which is digits 4, 236).
        local ramp = (r1 - 1) * 255 + r2 - 1
        if cap > 0 then cap = math.max(1, math.ceil(cap * ramp / 1000)) end
      end
      if gen == ((g1 - 1) * 255 + g2 - 1) * 255 + g3 - 1 and load < cap and (q1 < 0 or c1 < q1) and (q2 < 0 or c2 < q2)
          and (q3 < 0 or c3 < q3) and (q4 < 0 or c4 < q4) then
        -- Same order as routing::choose: utilisation, then longest idle, then rep id (the
        -- list order within a group, so an exact tie keeps the earlier one).
        local util = load / math.max(cap, 1)
        local better = not best
        if not better then
          if math.abs(util - b_util) > 2.220446049250313e-16 then
            better = util < b_util
          else
            better = last < b_last
          end
        end
        if better then
          best, b_len, b_slot, b_util, b_last = pos, len, slot, util, last
          b_periods = {d3(a1, a2, a3), d2(w1, w2), d2(m1, m2), d2(q1_, q2_)}
        end
      end
    end
    pos = pos + H + len
  until pos > n or string.byte(cands, pos) ~= 2
end

-- What was read, for the decision record: the whole table when that is about as short.
local read
if nread * 2 * LEN >= #t then
  read = {'T', t}
else
  local recs, at = {}, 1
  for i = 1, nread do
    local _, s1, s2 = string.byte(cands, at, at + 2)
    local len = string.byte(cands, at + H - 1)
    local off = d2(s1, s2) * LEN
    -- A slot past the end reads as a free one, so the records stay LEN bytes apart.
    recs[i] = off + LEN <= #t and string.sub(t, off + 1, off + LEN)
      or struct.pack(S, -1, 0, -1, 0, -1, 0, 0, -1, 0, 0, -1, 0, 0, -1, 0, 0)
    at = at + H + len
  end
  read = {'R', table.concat(recs)}
end
if best then
  best = string.sub(cands, best + H, best + H - 1 + b_len)
end

if best then
  local r = {struct.unpack(S, t, b_slot * LEN + 1)}
  r[2] = r[2] + 1
  r[3] = tonumber(now)
  for k = 0, 3 do
    -- A count whose period has moved on starts again.
    if r[6 + 3 * k] ~= b_periods[k + 1] then r[7 + 3 * k] = 0 end
    r[6 + 3 * k] = b_periods[k + 1]
    r[7 + 3 * k] = r[7 + 3 * k] + 1
  end
  redis.call('SETRANGE', KEYS[2], b_slot * LEN, struct.pack(S, r[1], r[2], r[3], r[4],
    r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15], r[16]))
  local offer_ms, sla_ms, nowv = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(now)
  local nstate, dl, kind = 'open', '', 'assigned'
  if mode == 'reassign' then
    kind = 'reassigned'
  end
  if offer_ms > 0 and mode ~= 'reassign' then
    nstate, dl, kind = 'offered', tostring(nowv + offer_ms), 'offered'
  elseif sla_ms > 0 then
    dl = tostring(nowv + sla_ms)
  end
  local about = best
  if mode == 'reassign' then
    about = ARGV[7]
    unload(KEYS[2], KEYS[5], ARGV[7])
    redis.call('ZREM', KEYS[11], held(ARGV[7], id))
    redis.call('HDEL', KEYS[1], 'ct')
    redis.call('HSET', KEYS[1], 'rep', best, 'at', now, 'ad', ARGV[18])
  elseif mode == 'queued' then
    redis.call('ZREM', KEYS[3], qm)
    redis.call('ZREM', KEYS[6], qm)
    redis.call('HDEL', KEYS[1], 'qm')
    redis.call('HSET', KEYS[1], 'state', nstate, 'rep', best, 'at', now, 'ad', ARGV[18])
  else
    redis.call('HSET', KEYS[1], 'state', nstate, 'rep', best, 'prob', prob, 'seg', seg, 'at', now, 'ctx', ARGV[6],
      'grp', ARGV[9], 'sla', ARGV[12], 'maxo', ARGV[16], 'qttl', ARGV[17], 'ad', ARGV[18], 'ev', ARGV[19])
  end
  redis.call('ZADD', KEYS[11], 0, held(best, id))
  -- A new lead has no deadline yet: two calls fewer on the SubmitLead path.
  if mode ~= 'new' then
    redis.call('ZREM', KEYS[10], 'o:' .. id, 's:' .. id)
  end
  if dl ~= '' then
    redis.call('ZADD', KEYS[10], dl, (nstate == 'offered' and 'o:' or 's:') .. id)
    redis.call('HSET', KEYS[1], 'dl', dl)
  elseif mode ~= 'new' then
    redis.call('HDEL', KEYS[1], 'dl')
  end
  if nstate == 'offered' then
    redis.call('HINCRBY', KEYS[1], 'offers', 1)
    -- A declined or expired offer puts the lead back in its group's queue: drains must see it.
    redis.call('HSETNX', KEYS[7], ARGV[9], ARGV[10])
  end
  emit(KEYS[8], KEYS[9], ARGV[13], ARGV[14], now, {k = kind, l = id, r = about, s = nstate, h = best,
    p = prob, g = seg, a = now, w = ARGV[15], d = dl})
  local bf = nil
  if mode ~= 'new' then bf = {rep = mode == 'reassign' and ARGV[7] or '', day = prev_ad, at = prev_at} end
  rpt_tally({k = kind, rep = about, seg = seg, p = prob, ev = ev, bf = bf,
    af = {rep = best, day = ARGV[18]}, new = mode == 'new', now = now})
  return {'assigned', best, now, prob, seg, nstate, dl, tostring(nread), read[1], read[2]}
end

if mode == 'new' then
  local seq = redis.call('INCR', KEYS[4])
  local member = string.format('%020d', seq) .. ':' .. id
  redis.call('ZADD', KEYS[3], -tonumber(prob), member)
  redis.call('ZADD', KEYS[6], -tonumber(prob), member)
  redis.call('HSETNX', KEYS[7], ARGV[9], ARGV[10])
  redis.call('HSET', KEYS[1], 'state', 'queued', 'prob', prob, 'seg', seg, 'at', now, 'qm', member, 'grp', ARGV[9], 'ctx', ARGV[6],
    'sla', ARGV[12], 'maxo', ARGV[16], 'qttl', ARGV[17], 'ad', ARGV[18], 'ev', ARGV[19])
  -- A queue TTL: the lead comes due at now + ttl ('q:' member; stale ones are skipped).
  local qttl = tonumber(ARGV[17]) or 0
  if qttl > 0 then
    redis.call('ZADD', KEYS[10], tonumber(now) + qttl, 'q:' .. id)
  end
  emit(KEYS[8], KEYS[9], ARGV[13], ARGV[14], now, {k = 'queued', l = id, s = 'queued', p = prob, g = seg,
    a = now, w = 'no rep with room'})
  rpt_tally({k = 'queued', rep = '', seg = seg, p = prob, ev = ev, af = {rep = '', day = ARGV[18]},
    new = true, now = now})
  return {'queued', tostring(redis.call('ZRANK', KEYS[3], member) + 1), tostring(nread), read[1], read[2]}
end
return {'noroom', '', tostring(nread), read[1], read[2]}
