-- Claim, drain-claim or reassign one lead, atomically, in one round trip.
-- Every key carries the pool's hash tag, so the script touches one cluster slot.
-- KEYS: 1 lead record, 2 rep table (one string: a 32-byte record per slot, layout S:
--       capacity (-1: free slot), quota (-1: none), load, period, count, last ms (-1: never),
--       generation), 3 queue (zset: score -probability, member "<seq>:<lead id>"),
--       4 queue sequence, 5 slots (rep id -> "slot:generation"; read only to reassign)
-- ARGV: 1 mode ("new" | "queued" | "reassign"), 2 lead id, 3 now (ms), 4 probability,
--       5 segment, 6 context JSON, 7 rep the lead must be with (reassign), 8 candidates, best
--       match first, each: flag (1 opens a match-score group, 2 ties with the one before;
--       within a group Rust sorts by rep id), slot (2 digits), generation (3), period (the
--       rep's local day number, 3), #id, id. Digits are base 255 stored as digit + 1, so no
--       byte is NUL and one string.byte call reads a candidate's numbers: Lua pays per call
--       and per string, and those (not bytes) set the claim rate.
-- A lower group is read only when nobody in the higher ones has room; with distinct match
-- scores that is usually one rep per claim. A candidate whose slot now holds another
-- generation (the directory was stale) is not eligible.
-- Returns strings only (Lua numbers would be truncated to integers on the way out); the last
-- two are how many candidates were read (a prefix of the list) and either the whole table
-- ("T" first) or the records of the candidates read, concatenated ("R" first).
local S = '<i4i4i4i4i4di4'
local mode, id, now = ARGV[1], ARGV[2], ARGV[3]

local state, rep_now, qm, prob, seg
if mode == 'new' then
  state = redis.call('HGET', KEYS[1], 'state')
  if state then
    local r = redis.call('HMGET', KEYS[1], 'rep', 'prob', 'seg', 'at', 'cat', 'outcome', 'qm')
    local pos = ''
    if state == 'queued' then
      pos = tostring((redis.call('ZRANK', KEYS[3], r[7]) or -1) + 1)
    end
    return {'replay', state, r[1] or '', r[2] or '', r[3] or '', r[4] or '', r[5] or '', r[6] or '', pos}
  end
  prob, seg = ARGV[4], ARGV[5]
else
  local r = redis.call('HMGET', KEYS[1], 'state', 'rep', 'qm', 'prob', 'seg')
  state, rep_now, qm, prob, seg = r[1], r[2], r[3], r[4], r[5]
  if mode == 'queued' and state ~= 'queued' then
    return {'gone'}
  end
  if mode == 'reassign' and (state ~= 'open' or rep_now ~= ARGV[7]) then
    return {'conflict', state or '', rep_now or ''}
  end
end

local cands, pos, n = ARGV[8], 1, #ARGV[8]
local t = redis.call('GET', KEYS[2]) or ''
local nread = 0
local best, b_len, b_slot, b_period, b_util, b_last, b_cap, b_quota, b_load, b_count, b_gen
while pos <= n and not best do
  -- One group: this candidate and the ones after it flagged 2.
  repeat
    local _, s1, s2, g1, g2, g3, p1, p2, p3, len = string.byte(cands, pos, pos + 9)
    if not len then pos = n + 1 break end
    local slot = (s1 - 1) * 255 + s2 - 1
    nread = nread + 1
    if slot * 32 + 32 <= #t then
      local cap, quota, load, p, count, last, gen = struct.unpack(S, t, slot * 32 + 1)
      local period = ((p1 - 1) * 255 + p2 - 1) * 255 + p3 - 1
      if p ~= period then count = 0 end
      if gen == ((g1 - 1) * 255 + g2 - 1) * 255 + g3 - 1 and load < cap
          and (quota < 0 or count < quota) then
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
          b_cap, b_quota, b_load, b_gen, b_period, b_count = cap, quota, load, gen, period, count
        end
      end
    end
    pos = pos + 10 + len
  until pos > n or string.byte(cands, pos) ~= 2
end

-- What was read, for the decision record: the whole table when that is about as short.
local read
if nread * 64 >= #t then
  read = {'T', t}
else
  local recs, at = {}, 1
  for i = 1, nread do
    local _, s1, s2, _g1, _g2, _g3, _p1, _p2, _p3, len = string.byte(cands, at, at + 9)
    local off = ((s1 - 1) * 255 + s2 - 1) * 32
    -- A slot past the end reads as a free one, so the records stay 32 bytes apart.
    recs[i] = off + 32 <= #t and string.sub(t, off + 1, off + 32) or struct.pack(S, -1, -1, 0, 0, 0, -1, 0)
    at = at + 10 + len
  end
  read = {'R', table.concat(recs)}
end
if best then
  best = string.sub(cands, best + 10, best + 9 + b_len)
end

if best then
  redis.call('SETRANGE', KEYS[2], b_slot * 32,
    struct.pack(S, b_cap, b_quota, b_load + 1, b_period, b_count + 1, tonumber(now), b_gen))
  if mode == 'reassign' then
    local si = redis.call('HGET', KEYS[5], ARGV[7])
    local old = si and tonumber(string.match(si, '^(%d+):'))
    if old and old * 32 + 32 <= #t then
      local cap, quota, load, period, count, last, gen = struct.unpack(S, t, old * 32 + 1)
      redis.call('SETRANGE', KEYS[2], old * 32,
        struct.pack(S, cap, quota, math.max(load - 1, 0), period, count, last, gen))
    end
    redis.call('HSET', KEYS[1], 'rep', best, 'at', now)
  elseif mode == 'queued' then
    redis.call('ZREM', KEYS[3], qm)
    redis.call('HDEL', KEYS[1], 'qm')
    redis.call('HSET', KEYS[1], 'state', 'open', 'rep', best, 'at', now)
  else
    redis.call('HSET', KEYS[1], 'state', 'open', 'rep', best, 'prob', prob, 'seg', seg, 'at', now, 'ctx', ARGV[6])
  end
  return {'assigned', best, now, prob, seg, tostring(nread), read[1], read[2]}
end

if mode == 'new' then
  local seq = redis.call('INCR', KEYS[4])
  local member = string.format('%020d', seq) .. ':' .. id
  redis.call('ZADD', KEYS[3], -tonumber(prob), member)
  redis.call('HSET', KEYS[1], 'state', 'queued', 'prob', prob, 'seg', seg, 'at', now, 'qm', member, 'ctx', ARGV[6])
  return {'queued', tostring(redis.call('ZRANK', KEYS[3], member) + 1), tostring(nread), read[1], read[2]}
end
return {'noroom', '', tostring(nread), read[1], read[2]}
