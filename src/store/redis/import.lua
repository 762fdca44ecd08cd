-- Writes an imported lead (unless its record exists) and applies the report-counter changes
-- the Rust side computed for it with ledger::tally, in one step; with no record, only the
-- counters (an unroutable lead). (Prelude: events.lua, for rpt_put.)
-- KEYS: 1 lead record, 2 held leads, 3 the pool's report-counter prefix
-- ARGV: 1 the record as a JSON object of field -> value ('' for none), 2 held-index member
--       ('' for none), then triples: bucket ("d<day>", "m<month>", "now"), field, change
-- Returns 1 when it wrote, 0 when the lead was already stored.
RPT.base = KEYS[3]
if ARGV[1] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  local flat = {}
  for k, v in pairs(cjson.decode(ARGV[1])) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  redis.call('HSET', KEYS[1], unpack(flat))
  if ARGV[2] ~= '' then redis.call('ZADD', KEYS[2], 0, ARGV[2]) end
end
for i = 3, #ARGV - 2, 3 do
  local b = ARGV[i]
  local kind, n = string.sub(b, 1, 1), tonumber(string.sub(b, 2))
  local index = (kind == 'd' and 'days') or (kind == 'm' and 'months') or nil
  rpt_put(b, index, n or 0, ARGV[i + 1], tonumber(ARGV[i + 2]))
end
return 1
