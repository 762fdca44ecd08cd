-- Writes imported leads (each unless its record exists) and applies the report-counter
-- changes the Rust side computed for them with ledger::tally, in one step: the changes of
-- the leads written are summed here first, so a batch costs one HINCRBYFLOAT per counter it
-- touches, not per lead. With no leads, only the counters (an unroutable lead).
-- (Prelude: events.lua, for rpt_put.)
-- KEYS: 1 held leads, 2 the pool's report-counter prefix, 3.. the leads' records
-- ARGV: 1 JSON array, one entry per lead key: {"rec": {field: value}, "held": member or "",
--       "d": [[bucket, field, change], ...]}; 2 JSON array of changes applied regardless
-- Returns one 1 (written) or 0 (already stored) per lead.
RPT.base = KEYS[2]
local leads = cjson.decode(ARGV[1])
local sums, order = {}, {}
local function add(d)
  local k = d[1] .. '\30' .. d[2]
  if sums[k] == nil then
    sums[k] = 0
    order[#order + 1] = {d[1], d[2], k}
  end
  sums[k] = sums[k] + tonumber(d[3])
end
local wrote = {}
for i, lead in ipairs(leads) do
  local key = KEYS[2 + i]
  if redis.call('EXISTS', key) == 1 then
    wrote[i] = 0
  else
    local flat = {}
    for k, v in pairs(lead.rec) do
      flat[#flat + 1] = k
      flat[#flat + 1] = v
    end
    redis.call('HSET', key, unpack(flat))
    if lead.held ~= '' then redis.call('ZADD', KEYS[1], 0, lead.held) end
    for _, d in ipairs(lead.d) do add(d) end
    wrote[i] = 1
  end
end
for _, d in ipairs(cjson.decode(ARGV[2])) do add(d) end
for _, o in ipairs(order) do
  local b = o[1]
  local kind, n = string.sub(b, 1, 1), tonumber(string.sub(b, 2))
  local index = (kind == 'd' and 'days') or (kind == 'm' and 'months') or nil
  rpt_put(b, index, n or 0, o[2], sums[o[3]])
end
return wrote
