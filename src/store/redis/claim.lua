-- Claim, drain-claim or reassign one lead, atomically, in one round trip.
-- Every key carries the pool's hash tag, so the script touches one cluster slot.
-- KEYS: 1 lead record, 2 loads, 3 capacities, 4 daily quotas, 5 period counts, 6 last assigned,
--       7 queue (zset: score -probability, member "<seq>:<lead id>"), 8 queue sequence
-- ARGV: 1 mode ("new" | "queued" | "reassign"), 2 lead id, 3 now (ms), 4 probability,
--       5 segment, 6 context JSON, 7 rep the lead must be with (reassign), 8 candidate count n,
--       then n triples: rep id, match score, quota period (the rep's local date)
-- Returns strings only (Lua numbers would be truncated to integers on the way out).
local mode, id, now = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[8])

local rec = redis.call('HMGET', KEYS[1], 'state', 'rep', 'prob', 'seg', 'at', 'cat', 'outcome', 'qm')
local state = rec[1]

if mode == 'new' and state then
  local pos = ''
  if state == 'queued' then
    pos = tostring((redis.call('ZRANK', KEYS[7], rec[8]) or -1) + 1)
  end
  return {'replay', state, rec[2] or '', rec[3] or '', rec[4] or '', rec[5] or '', rec[6] or '', rec[7] or '', pos}
end
if mode == 'queued' and state ~= 'queued' then
  return {'gone'}
end
if mode == 'reassign' and (state ~= 'open' or rec[2] ~= ARGV[7]) then
  return {'conflict', state or '', rec[2] or ''}
end

local ids, scores, periods = {}, {}, {}
for i = 1, n do
  ids[i] = ARGV[6 + 3 * i]
  scores[i] = tonumber(ARGV[7 + 3 * i])
  periods[i] = ARGV[8 + 3 * i]
end

local loads, caps, quotas, counts, lasts = {}, {}, {}, {}, {}
if n > 0 then
  loads = redis.call('HMGET', KEYS[2], unpack(ids))
  caps = redis.call('HMGET', KEYS[3], unpack(ids))
  quotas = redis.call('HMGET', KEYS[4], unpack(ids))
  counts = redis.call('HMGET', KEYS[5], unpack(ids))
  lasts = redis.call('HMGET', KEYS[6], unpack(ids))
end

-- The count field holds "<period>|<count>"; another period means 0 so far.
local function count_of(i)
  local v = counts[i]
  if not v then return 0 end
  local sep = string.find(v, '|', 1, true)
  if string.sub(v, 1, sep - 1) ~= periods[i] then return 0 end
  return tonumber(string.sub(v, sep + 1))
end

-- Same order as routing::choose in Rust: match score, then utilisation, then idle, then id.
local best, best_util, best_last = nil, 0, 0
for i = 1, n do
  local cap = tonumber(caps[i])
  if cap then
    local load = tonumber(loads[i]) or 0
    local quota = tonumber(quotas[i])
    if load < cap and (not quota or count_of(i) < quota) then
      local util = load / math.max(cap, 1)
      local last = tonumber(lasts[i]) or -math.huge
      local better = false
      if not best then
        better = true
      else
        local ds = scores[i] - scores[best]
        if math.abs(ds) > 1e-9 then
          better = ds > 0
        elseif math.abs(util - best_util) > 2.220446049250313e-16 then
          better = util < best_util
        elseif last ~= best_last then
          better = last < best_last
        else
          better = ids[i] < ids[best]
        end
      end
      if better then
        best, best_util, best_last = i, util, last
      end
    end
  end
end

local function live()
  local out = {}
  for i = 1, n do
    out[#out + 1] = loads[i] or ''
    out[#out + 1] = caps[i] or ''
    out[#out + 1] = tostring(count_of(i))
    out[#out + 1] = quotas[i] or ''
    out[#out + 1] = lasts[i] or ''
  end
  return out
end

local function reply(head)
  local out = head
  for _, v in ipairs(live()) do out[#out + 1] = v end
  return out
end

if best then
  local rep = ids[best]
  redis.call('HINCRBY', KEYS[2], rep, 1)
  redis.call('HSET', KEYS[5], rep, periods[best] .. '|' .. tostring(count_of(best) + 1))
  redis.call('HSET', KEYS[6], rep, now)
  if mode == 'reassign' then
    local old = ARGV[7]
    local load = tonumber(redis.call('HGET', KEYS[2], old)) or 0
    if load > 0 then redis.call('HINCRBY', KEYS[2], old, -1) end
    redis.call('HSET', KEYS[1], 'rep', rep, 'at', now)
  else
    if mode == 'queued' then
      redis.call('ZREM', KEYS[7], rec[8])
      redis.call('HDEL', KEYS[1], 'qm')
      redis.call('HSET', KEYS[1], 'state', 'open', 'rep', rep, 'at', now)
    else
      redis.call('HSET', KEYS[1], 'state', 'open', 'rep', rep, 'prob', ARGV[4], 'seg', ARGV[5], 'at', now, 'ctx', ARGV[6])
    end
  end
  local r = redis.call('HMGET', KEYS[1], 'prob', 'seg')
  return reply({'assigned', rep, now, r[1], r[2], tostring(n)})
end

if mode == 'new' then
  local seq = redis.call('INCR', KEYS[8])
  local member = string.format('%020d', seq) .. ':' .. id
  redis.call('ZADD', KEYS[7], -tonumber(ARGV[4]), member)
  redis.call('HSET', KEYS[1], 'state', 'queued', 'prob', ARGV[4], 'seg', ARGV[5], 'at', now, 'qm', member, 'ctx', ARGV[6])
  local pos = redis.call('ZRANK', KEYS[7], member) + 1
  return reply({'queued', tostring(pos), tostring(n)})
end
return reply({'noroom', '', tostring(n)})
