-- Write or delete a rep's profile and its limits, atomically, keeping its live counters.
-- KEYS: 1 profiles (rep -> JSON), 2 rep table (records of layout S, as in claim.lua),
--       3 availability (rep -> "1"/"0"), 4 slots (rep id -> "slot:generation")
-- ARGV: 1 "upsert" | "delete" | "active", 2 rep id, then for upsert: 3 profile JSON,
--       4 capacity, 5..8 quotas per day, week, month, quarter ("" for none), 9 availability;
--       for active: 3 availability
-- A new rep takes the first free slot (capacity -1) with its generation + 1, or a new slot
-- at the end; a deleted rep's slot is freed, keeping its generation.
local S = '<i4i4di4i4i4i4i4i4i4i4i4i4i4i4i4'
local LEN = 68
local op, id = ARGV[1], ARGV[2]
local si = redis.call('HGET', KEYS[4], id)
local slot = si and tonumber(string.match(si, '^(%d+):'))
local function record(at)
  local v = redis.call('GETRANGE', KEYS[2], at * LEN, at * LEN + LEN - 1)
  if #v < LEN then return nil end
  return {struct.unpack(S, v)}
end
if op == 'upsert' then
  local r = slot and record(slot)
  if not r then
    local t = redis.call('GET', KEYS[2]) or ''
    local gen = 1
    slot = #t / LEN
    for at = 0, #t / LEN - 1 do
      local cap, _l, _t, g = struct.unpack(S, t, at * LEN + 1)
      if cap < 0 then
        slot, gen = at, g + 1
        break
      end
    end
    r = {0, 0, -1, gen, -1, 0, 0, -1, 0, 0, -1, 0, 0, -1, 0, 0}
    redis.call('HSET', KEYS[4], id, slot .. ':' .. gen)
  end
  r[1] = tonumber(ARGV[4])
  for k = 0, 3 do r[5 + 3 * k] = tonumber(ARGV[5 + k]) or -1 end
  redis.call('SETRANGE', KEYS[2], slot * LEN, struct.pack(S, r[1], r[2], r[3], r[4],
    r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15], r[16]))
  redis.call('HSET', KEYS[1], id, ARGV[3])
  redis.call('HSET', KEYS[3], id, ARGV[9])
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
local load = r and r[2] or 0
if load > 0 then
  return {'busy', tostring(load)}
end
if r then
  redis.call('SETRANGE', KEYS[2], slot * LEN,
    struct.pack(S, -1, 0, -1, r[4], -1, 0, 0, -1, 0, 0, -1, 0, 0, -1, 0, 0))
end
redis.call('HDEL', KEYS[1], id)
redis.call('HDEL', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
return {'ok'}
