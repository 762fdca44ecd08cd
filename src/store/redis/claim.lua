-- Claim, drain-claim or reassign one lead, atomically, in one round trip.
-- Every key carries the pool's hash tag, so the script touches one cluster slot.
-- KEYS: 1 lead record, 2 rep state (rep -> struct.pack(S, capacity, quota or -1, load,
--       period, count, last ms or -1): one 28-byte field per rep, read with one C call),
--       3 queue (zset: score -probability, member "<seq>:<lead id>"), 4 queue sequence
-- ARGV: 1 mode ("new" | "queued" | "reassign"), 2 lead id, 3 now (ms), 4 probability,
--       5 segment, 6 context JSON, 7 rep the lead must be with (reassign), 8 candidates, best
--       match first, each struct.pack('<BBc0Bc0', flag, #id, id, #period, period): flag 1
--       starts a match-score group, 2 ties with the one before; period is the rep's local
--       day number as text. One argument, one C call per candidate, parsed only as far as
--       needed: Redis charges per argument and Lua per string and call, and those (not
--       bytes) set the claim rate. No byte of it is NUL, so redis-benchmark can send it.
-- A lower group is read only when nobody in the higher ones has room; with distinct match
-- scores that is usually one rep per claim.
-- Returns strings only (Lua numbers would be truncated to integers on the way out); the last
-- one is the state fields of the candidates read (a prefix of the list), concatenated.
local S = '<i4i4i4i4i4d'
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
-- The state fields read, in candidate order (Rust maps them back by position).
local read = {}
local MISSING
local best, b_period, b_util, b_last, b_cap, b_quota, b_load, b_count
local flag, rep, period
if n > 0 then flag, rep, period, pos = struct.unpack('<BBc0Bc0', cands, 1) end
while rep and not best do
  -- One group: this candidate and the ones after it flagged 2 (same match score).
  local ids, periods = {rep}, {period}
  rep = nil
  while pos <= n do
    flag, rep, period, pos = struct.unpack('<BBc0Bc0', cands, pos)
    if flag ~= 2 then break end
    ids[#ids + 1], periods[#periods + 1] = rep, period
    rep = nil
  end
  local states = redis.call('HMGET', KEYS[2], unpack(ids))
  for x = 1, #ids do
    local v = states[x]
    if v then
      read[#read + 1] = v
      local cap, quota, load, p, count, last = struct.unpack(S, v)
      -- The period only matters under a quota (and for the winner, below).
      if quota >= 0 and p ~= tonumber(periods[x]) then count = 0 end
      if load < cap and (quota < 0 or count < quota) then
        -- Same order as routing::choose: utilisation, then longest idle, then rep id.
        local id = ids[x]
        local util = load / math.max(cap, 1)
        local better = not best
        if not better then
          if math.abs(util - b_util) > 2.220446049250313e-16 then
            better = util < b_util
          elseif last ~= b_last then
            better = last < b_last
          else
            better = id < best
          end
        end
        if better then
          local now_period = tonumber(periods[x])
          best, b_util, b_last, b_cap, b_quota, b_load = id, util, last, cap, quota, load
          b_period, b_count = now_period, (p == now_period) and count or 0
        end
      end
    else
      -- No state field: nobody set this rep up; it has no capacity.
      MISSING = MISSING or struct.pack(S, -1, -1, 0, 0, 0, -1)
      read[#read + 1] = MISSING
    end
  end
end
read = table.concat(read)

if best then
  local writes = {best, struct.pack(S, b_cap, b_quota, b_load + 1, b_period, b_count + 1, tonumber(now))}
  if mode == 'reassign' then
    local old = ARGV[7]
    local ov = redis.call('HGET', KEYS[2], old)
    if ov then
      local cap, quota, load, period, count, last = struct.unpack(S, ov)
      writes[3], writes[4] = old, struct.pack(S, cap, quota, math.max(load - 1, 0), period, count, last)
    end
    redis.call('HSET', KEYS[1], 'rep', best, 'at', now)
  elseif mode == 'queued' then
    redis.call('ZREM', KEYS[3], qm)
    redis.call('HDEL', KEYS[1], 'qm')
    redis.call('HSET', KEYS[1], 'state', 'open', 'rep', best, 'at', now)
  else
    redis.call('HSET', KEYS[1], 'state', 'open', 'rep', best, 'prob', prob, 'seg', seg, 'at', now, 'ctx', ARGV[6])
  end
  redis.call('HSET', KEYS[2], unpack(writes))
  return {'assigned', best, now, prob, seg, read}
end

if mode == 'new' then
  local seq = redis.call('INCR', KEYS[4])
  local member = string.format('%020d', seq) .. ':' .. id
  redis.call('ZADD', KEYS[3], -tonumber(prob), member)
  redis.call('HSET', KEYS[1], 'state', 'queued', 'prob', prob, 'seg', seg, 'at', now, 'qm', member, 'ctx', ARGV[6])
  return {'queued', tostring(redis.call('ZRANK', KEYS[3], member) + 1), read}
end
return {'noroom', '', read}
