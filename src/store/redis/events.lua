-- Prelude of every script that changes a lead (prepended by the Rust side).
-- emit appends one event to the pool's stream with the ID "<n>-0", n from the pool's event
-- counter, so cursors are 1, 2, 3, ... with no gap; the stream keeps about `maxlen` entries
-- and, every 64th event, drops those older than `age` ms (0: no age limit).
-- Fields: k kind, l lead, r rep the event is about, s state after (queued | offered | open |
-- closed), h holder, p probability, g segment, a assigned (or queued) at, o outcome,
-- w reason, t time, d deadline.
local function emit(ev, evseq, maxlen, age, now, e)
  local seq = redis.call('INCR', evseq)
  redis.call('XADD', ev, 'MAXLEN', '~', maxlen, seq .. '-0',
    'k', e.k, 'l', e.l, 'r', e.r or '', 's', e.s, 'h', e.h or '', 'p', e.p or '',
    'g', e.g or '', 'a', e.a or '', 'o', e.o or '', 'w', e.w or '', 't', now, 'd', e.d or '')
  age = tonumber(age)
  if age > 0 and seq % 64 == 0 then
    -- IDs are dense, so the oldest entry to keep is found by bisecting on the ID (a few
    -- one-entry reads), not by reading the stream.
    local cutoff = tonumber(now) - age
    local function t_at(n)
      local r = redis.call('XRANGE', ev, n .. '-0', '+', 'COUNT', 1)[1]
      -- 't' is the 11th field pair.
      return tonumber(r[2][22]), tonumber(string.match(r[1], '^(%d+)'))
    end
    local t, lo = t_at(0)
    if t < cutoff then
      local hi = seq
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if t_at(mid) >= cutoff then hi = mid else lo = mid + 1 end
      end
      redis.call('XTRIM', ev, 'MINID', lo .. '-0')
    end
  end
end

-- The held-leads index member of `rep` holding lead `id`.
local function held(rep, id) return rep .. '\0' .. id end

-- Takes one off the load of `rep` (never below 0), if its slot still has the generation the
-- slots hash names. S and LEN as in claim.lua.
local function unload(table_key, slots_key, rep)
  local S = '<i4i4di4i4i4i4i4i4i4i4i4i4i4i4i4'
  local LEN = 68
  local si = redis.call('HGET', slots_key, rep)
  local slot, generation = string.match(si or '', '^(%d+):(%d+)$')
  if not slot then return end
  local v = redis.call('GETRANGE', table_key, slot * LEN, slot * LEN + LEN - 1)
  if #v ~= LEN then return end
  local o = {struct.unpack(S, v)}
  if o[4] ~= tonumber(generation) then return end
  o[2] = math.max(o[2] - 1, 0)
  redis.call('SETRANGE', table_key, slot * LEN, struct.pack(S, o[1], o[2], o[3], o[4],
    o[5], o[6], o[7], o[8], o[9], o[10], o[11], o[12], o[13], o[14], o[15], o[16]))
end
