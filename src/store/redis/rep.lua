-- Write or delete a rep's profile and the fields the claim script reads, atomically.
-- KEYS: 1 profiles, 2 capacities, 3 daily quotas, 4 loads, 5 period counts, 6 last assigned,
--       7 availability
-- ARGV: 1 "upsert" | "delete" | "active", 2 rep id, then for upsert: 3 profile JSON,
--       4 capacity, 5 quota ("" for none), 6 active ("1"/"0"); for active: 3 "1"/"0"
local op, id = ARGV[1], ARGV[2]
if op == 'upsert' then
  redis.call('HSET', KEYS[1], id, ARGV[3])
  redis.call('HSET', KEYS[2], id, ARGV[4])
  if ARGV[5] == '' then redis.call('HDEL', KEYS[3], id) else redis.call('HSET', KEYS[3], id, ARGV[5]) end
  redis.call('HSET', KEYS[7], id, ARGV[6])
  return {'ok'}
end
if redis.call('HEXISTS', KEYS[1], id) == 0 then
  return {'missing'}
end
if op == 'active' then
  redis.call('HSET', KEYS[7], id, ARGV[3])
  return {'ok'}
end
local load = tonumber(redis.call('HGET', KEYS[4], id)) or 0
if load > 0 then
  return {'busy', tostring(load)}
end
for i = 1, 7 do redis.call('HDEL', KEYS[i], id) end
return {'ok'}
