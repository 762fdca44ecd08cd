-- Write or delete a rep's profile and its limits, atomically, keeping its live counters.
-- KEYS: 1 profiles (rep -> JSON), 2 rep state (rep -> packed state, layout S as in
--       claim.lua), 3 availability (rep -> "1"/"0")
-- ARGV: 1 "upsert" | "delete" | "active", 2 rep id, then for upsert: 3 profile JSON,
--       4 capacity, 5 quota ("" for none), 6 availability; for active: 3 availability
local S = '<i4i4i4i4i4d'
local op, id = ARGV[1], ARGV[2]
local v = redis.call('HGET', KEYS[2], id)
if op == 'upsert' then
  local load, period, count, last = 0, -2147483648, 0, -1
  if v then
    local _c, _q
    _c, _q, load, period, count, last = struct.unpack(S, v)
  end
  local packed = struct.pack(S, tonumber(ARGV[4]), tonumber(ARGV[5]) or -1, load, period, count, last)
  redis.call('HSET', KEYS[1], id, ARGV[3])
  redis.call('HSET', KEYS[2], id, packed)
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
local load = 0
if v then
  local _c, _q
  _c, _q, load = struct.unpack(S, v)
end
if load > 0 then
  return {'busy', tostring(load)}
end
for i = 1, 3 do redis.call('HDEL', KEYS[i], id) end
return {'ok'}
