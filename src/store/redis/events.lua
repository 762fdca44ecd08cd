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

-- Report counters, kept in the step that moves the lead. This mirrors `ledger::tally` in
-- src/domain/ledger.rs (the contract suite checks both give the same cells): each script
-- sets RPT.base (the pool's "…:rpt:" prefix) and RPT.today (the report day of now, from
-- the Rust side, which knows the report time zone), then calls rpt_tally once per change.
-- Counters live in one hash per bucket ("d<day>", "m<month>", "now"), field
-- "<metric>\31<rep>\31<segment>"; the "days" and "months" zsets index the dated buckets.
local RPT = {seen = {}}

-- Days since 1970-01-01 -> year * 12 + month - 1 (Howard Hinnant's civil_from_days).
local function month_of(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y * 12 + m - 1
end

local function rpt_put(bucket, index, score, field, delta)
  if delta == 0 then return end
  -- %.17g: Lua's tostring keeps 14 digits; the memory store adds exact f64s.
  redis.call('HINCRBYFLOAT', RPT.base .. bucket, field, string.format('%.17g', delta))
  if index and not RPT.seen[bucket] then
    RPT.seen[bucket] = true
    redis.call('ZADD', RPT.base .. index, score, bucket)
  end
end

-- day nil: the undated "now" bucket.
local function rpt_add(day, rep, seg, metric, delta)
  local field = metric .. '\31' .. rep .. '\31' .. seg
  if day == nil then
    rpt_put('now', nil, 0, field, delta)
  else
    day = tonumber(day)
    rpt_put('d' .. day, 'days', day, field, delta)
    local mo = month_of(day)
    rpt_put('m' .. mo, 'months', mo, field, delta)
  end
end

local function rpt_hist(stage, ms)
  local s, b = math.floor(math.max(ms, 0) / 1000), 0
  while s >= 1 do s = math.floor(s / 2); b = b + 1 end
  return 64 + stage * 32 + math.min(b, 31)
end

-- t: k kind, rep (the rep the change is about), seg, p, ev (expected value), o outcome,
-- v value ('' or nil: none), bf / af the holding before / after ({rep, day, at}), new (the
-- lead's first claim), held (ms its holding began), now (ms).
local function rpt_tally(t)
  local p = math.min(math.max(tonumber(t.p) or 0, 0), 1)
  local ev = tonumber(t.ev) or 0
  local today, now, seg, rep = RPT.today, tonumber(t.now), t.seg or '', t.rep or ''
  local q = p * (1 - p)
  local k3 = q * (1 - 2 * p)
  for _, h in ipairs({{t.bf, -1}, {t.af, 1}}) do
    local hold, sign = h[1], h[2]
    if hold then
      rpt_add(hold.day, hold.rep, seg, 20, sign)
      rpt_add(nil, hold.rep, seg, 20, sign)
      rpt_add(nil, hold.rep, seg, 21, sign * p)
      rpt_add(nil, hold.rep, seg, 22, sign * q)
      rpt_add(nil, hold.rep, seg, 23, sign * k3)
      rpt_add(nil, hold.rep, seg, 24, sign * (p * ev))
    end
  end
  if t.new then rpt_add(today, '', seg, 0, 1) end
  local k = t.k
  if k == 'assigned' or k == 'offered' then
    if t.bf then rpt_add(today, rep, seg, rpt_hist(0, now - tonumber(t.bf.at)), 1) end
    if k == 'assigned' then
      rpt_add(today, rep, seg, 1, 1)
    else
      rpt_add(today, rep, seg, 3, 1)
    end
  elseif k == 'accepted' then
    rpt_add(today, rep, seg, 4, 1)
    rpt_add(today, rep, seg, 1, 1)
    rpt_add(today, rep, seg, rpt_hist(1, now - tonumber(t.held)), 1)
  elseif k == 'declined' then rpt_add(today, rep, seg, 5, 1)
  elseif k == 'expired' then rpt_add(today, rep, seg, 6, 1)
  elseif k == 'reassigned' then rpt_add(today, rep, seg, 7, 1)
  elseif k == 'sla_breached' then rpt_add(today, rep, seg, 9, 1)
  elseif k == 'contacted' then
    rpt_add(today, rep, seg, 8, 1)
    rpt_add(today, rep, seg, rpt_hist(2, now - tonumber(t.held)), 1)
  elseif k == 'closed' then
    local metric = ({won = 10, lost = 11, disqualified = 12, returned = 13})[t.o] or 14
    rpt_add(today, rep, seg, metric, 1)
    if t.bf and t.bf.rep ~= '' then
      rpt_add(today, rep, seg, rpt_hist(3, now - tonumber(t.bf.at)), 1)
    end
    if metric == 10 or metric == 11 then
      local won = metric == 10 and 1 or 0
      rpt_add(today, rep, seg, 16, p)
      rpt_add(today, rep, seg, 17, q)
      rpt_add(today, rep, seg, 18, k3)
      local b = math.min(math.floor(p * 10), 9)
      rpt_add(today, rep, seg, 32 + b, 1)
      rpt_add(today, rep, seg, 42 + b, won)
      rpt_add(today, rep, seg, 52 + b, p)
      if won == 1 then
        local v = tonumber(t.v or '')
        rpt_add(today, rep, seg, 19, v or ev)
      end
    end
  end
end
