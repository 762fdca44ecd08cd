-- The model registry (see store/registry.rs). KEYS: gen, history (list of versions, newest
-- first), artifact key prefix. ARGV[1]: "publish" | "rollback" | "live".
-- publish: ARGV[2] version, ARGV[3] artifact bytes, ARGV[4] keep.
-- Answers {generation, version, artifact} of the live entry, {generation} when empty, {-1}
-- for a rollback with nothing to go back to.
local gen_key, hist, art = KEYS[1], KEYS[2], KEYS[3]
local mode = ARGV[1]
if mode == "publish" then
  local v = ARGV[2]
  redis.call("LREM", hist, 0, v)
  redis.call("LPUSH", hist, v)
  redis.call("SET", art .. v, ARGV[3])
  local keep = tonumber(ARGV[4])
  local old = redis.call("LRANGE", hist, keep, -1)
  for _, o in ipairs(old) do
    redis.call("DEL", art .. o)
  end
  redis.call("LTRIM", hist, 0, keep - 1)
  redis.call("INCR", gen_key)
elseif mode == "rollback" then
  if redis.call("LLEN", hist) < 2 then
    return {-1}
  end
  local dropped = redis.call("LPOP", hist)
  redis.call("DEL", art .. dropped)
  redis.call("INCR", gen_key)
end
local g = tonumber(redis.call("GET", gen_key) or "0")
local v = redis.call("LINDEX", hist, 0)
if not v then
  return {g}
end
return {g, v, redis.call("GET", art .. v) or ""}
