-- Claim, drain-claim or reassign one lead, atomically, in one round trip.
-- Every key carries the pool's hash tag, so the script touches one cluster slot.
-- KEYS: 1 lead record, 2 rep state (rep -> "capacity|quota|load|period|count|last": one field
--       per rep, so a claim reads and writes one field per rep it looks at; Redis charges
--       about 2.5 us per call inside a script, and calls, not bytes, set the claim rate),
--       3 queue (zset: score -probability, member "<seq>:<lead id>"), 4 queue sequence
-- ARGV: 1 mode ("new" | "queued" | "reassign"), 2 lead id, 3 now (ms), 4 probability,
--       5 segment, 6 context JSON, 7 rep the lead must be with (reassign), 8 candidates: one
--       string of records "rep id \31 match score \31 quota period (the rep's local date)"
--       separated by \30, best match first. One argument, parsed only as far as needed: every
--       argument and every string a script makes costs time, and calls and strings, not bytes,
--       set the claim rate.
-- Candidates are read a score group at a time: a lower group is read only when nobody in the
-- higher ones has room. With distinct scores that is usually one rep per claim.
-- Returns strings only (Lua numbers would be truncated to integers on the way out); after the
-- head come pairs (rep id, its state field or nil) for every candidate the script read.
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

-- A rep's state field: capacity, quota, load, period, count, last (one pattern match: every
-- string a script creates costs, so there is no general-purpose split here).
local function fields(v)
  return {string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')}
end

local cands, pos = ARGV[8], 1
-- The next candidate (id, score, period), or nil at the end.
local function next_cand()
  if pos > #cands then return nil end
  local a = string.find(cands, '\31', pos, true)
  local b = string.find(cands, '\31', a + 1, true)
  local c = string.find(cands, '\30', b + 1, true) or (#cands + 1)
  local id, score, period = string.sub(cands, pos, a - 1), tonumber(string.sub(cands, a + 1, b - 1)), string.sub(cands, b + 1, c - 1)
  pos = c + 1
  return id, score, period
end

local parsed = {}
local live = {}
local best, best_util, best_last, best_count, best_period
local next_id, next_score, next_period = next_cand()
while next_id and not best do
  -- The group: candidates whose score ties with the first one's.
  local first = next_score
  local ids, periods = {}, {}
  while next_id and math.abs(next_score - first) <= 1e-9 do
    ids[#ids + 1], periods[#periods + 1] = next_id, next_period
    next_id, next_score, next_period = next_cand()
  end
  local states = redis.call('HMGET', KEYS[2], unpack(ids))
  for x = 1, #ids do
    local rep, period = ids[x], periods[x]
    local cap, quota, load, count, last
    if states[x] then
      local f = fields(states[x])
      cap, quota, load, last = tonumber(f[1]), tonumber(f[2]), tonumber(f[3]) or 0, tonumber(f[6])
      count = (f[4] == period) and (tonumber(f[5]) or 0) or 0
      parsed[rep] = f
    else
      load, count = 0, 0
    end
    -- The decision record needs what was read: hand back the fields as they are.
    live[#live + 1] = rep
    live[#live + 1] = states[x] or false
    if cap and load < cap and (not quota or count < quota) then
      -- Same order as routing::choose: utilisation, then longest idle, then rep id.
      local util = load / math.max(cap, 1)
      local l = last or -math.huge
      local better = not best
      if not better then
        if math.abs(util - best_util) > 2.220446049250313e-16 then
          better = util < best_util
        elseif l ~= best_last then
          better = l < best_last
        else
          better = rep < best
        end
      end
      if better then
        best, best_util, best_last, best_count, best_period = rep, util, l, count, period
      end
    end
  end
end

if best then
  local f = parsed[best]
  f[3] = tostring((tonumber(f[3]) or 0) + 1)
  f[4], f[5], f[6] = best_period, tostring(best_count + 1), now
  local writes = {best, table.concat(f, '|')}
  if mode == 'reassign' then
    local old = ARGV[7]
    local ov = redis.call('HGET', KEYS[2], old)
    if ov then
      local o = fields(ov)
      o[3] = tostring(math.max((tonumber(o[3]) or 0) - 1, 0))
      writes[3], writes[4] = old, table.concat(o, '|')
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
  return {'assigned', best, now, prob, seg, unpack(live)}
end

if mode == 'new' then
  local seq = redis.call('INCR', KEYS[4])
  local member = string.format('%020d', seq) .. ':' .. id
  redis.call('ZADD', KEYS[3], -tonumber(prob), member)
  redis.call('HSET', KEYS[1], 'state', 'queued', 'prob', prob, 'seg', seg, 'at', now, 'qm', member, 'ctx', ARGV[6])
  return {'queued', tostring(redis.call('ZRANK', KEYS[3], member) + 1), unpack(live)}
end
return {'noroom', '', unpack(live)}
