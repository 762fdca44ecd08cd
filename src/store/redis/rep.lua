-- Write or delete a rep's profile and its limits, atomically, keeping its live counters.
-- KEYS: 1 profiles (rep -> JSON), 2 rep table (records of layout S, as in claim.lua),
--       3 availability (rep -> "1"/"0"), 4 slots (rep id -> "slot:generation")
-- ARGV: 1 "upsert" | "delete" | "active", 2 rep id, then for upsert: 3 profile JSON,
--       4 capacity, 5 quota ("" for none), 6 availability; for active: 3 availability
-- A new rep takes the first free slot (capacity -1) with its generation + 1, or a new slot
-- at the end; a deleted rep's slot is freed, keeping its generation.
local S = '<i4i4i4i4i4di4'
local op, id = ARGV[1], ARGV[2]
local si = redis.call('HGET', KEYS[4], id)
local slot = si and tonumber(string.match(si, '^(%d+):'))
local function record(at)
  local v = redis.call('GETRANGE', KEYS[2], at * 32, at * 32 + 31)
  if #v < 32 then return nil end
  return {struct.unpack(S, v)}
end
if op == 'upsert' then
  local r = slot and record(slot)
  local load, period, count, last, gen = 0, 0, 0, -1, 1
  if r then
    load, period, count, last, gen = r[3], r[4], r[5], r[6], r[7]
  else
    local t = redis.call('GET', KEYS[2]) or ''
    slot = #t / 32
    for at = 0, #t / 32 - 1 do
      local cap, _q, _l, _p, _c, _t, g = struct.unpack(S, t, at * 32 + 1)
      if cap < 0 then
        slot, gen = at, g + 1
        break
      end
    end
    redis.call('HSET', KEYS[4], id, slot .. ':' .. gen)
  end
  redis.call('SETRANGE', KEYS[2], slot * 32,
    struct.pack(S, tonumber(ARGV[4]), tonumber(ARGV[5]) or -1, load, period, count, last, gen))
  redis.call('HSET', KEYS[1], id, ARGV[3])
  redis.call('HSET', KEYS[3], id, ARGV[6])
  return {'ok'}
end
if redis.call('HEXISTS', KEYS[1], id) == 0 then
  return {'missing'}
end
if op == 'active' then
  redis.call('HSET', KEYS[3], id, ARGV[3])
  return {'ok'}
end
local r = slot and record(slot)
local load = r and r[3] or 0
if load > 0 then
  return {'busy', tostring(load)}
end
if r then
  redis.call('SETRANGE', KEYS[2], slot * 32, struct.pack(S, -1, -1, 0, 0, 0, -1, r[7]))
end
redis.call('HDEL', KEYS[1], id)
redis.call('HDEL', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
return {'ok'}
