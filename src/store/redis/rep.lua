-- Write or delete a rep's profile and its limits, atomically, keeping its live counters.
-- KEYS: 1 profiles (rep -> JSON), 2 rep state (rep -> "capacity|quota|load|period|count|last"),
--       3 availability (rep -> "1"/"0")
-- ARGV: 1 "upsert" | "delete" | "active", 2 rep id, then for upsert: 3 profile JSON,
--       4 capacity, 5 quota ("" for none), 6 availability; for active: 3 availability
local op, id = ARGV[1], ARGV[2]
local function fields(v)
  local f = {}
  for part in string.gmatch(v .. '|', '([^|]*)|') do f[#f + 1] = part end
  return f
end
local v = redis.call('HGET', KEYS[2], id)
if op == 'upsert' then
  local f = v and fields(v) or {'', '', '0', '', '0', ''}
  f[1], f[2] = ARGV[4], ARGV[5]
  redis.call('HSET', KEYS[1], id, ARGV[3])
  redis.call('HSET', KEYS[2], id, table.concat(f, '|'))
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
local load = v and tonumber(fields(v)[3]) or 0
if load > 0 then
  return {'busy', tostring(load)}
end
for i = 1, 3 do redis.call('HDEL', KEYS[i], id) end
return {'ok'}
