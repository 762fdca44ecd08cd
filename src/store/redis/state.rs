//! A pool's rep table as the Lua scripts store it: one Redis string per pool holding a
//! 68-byte record per slot, `struct.pack(FORMAT, capacity, load, last, generation, then
//! quota, period, count for each of day, week, month and quarter)`; the `slots` hash maps
//! rep id -> "slot:generation".
//!
//! One string, because a claim's cost is Lua and Redis work per rep it reads, not bytes: one
//! GET and one `struct.unpack` (a single C call that yields numbers) per rep, where a hash
//! field per rep cost an HMGET conversion and a Lua string per rep (about 4x the time with 20
//! reps, measured in Redis). A freed slot keeps its generation (capacity -1) and the next rep
//! in it gets generation + 1, so a claim built from a stale directory cannot touch another
//! rep's record: the script checks the generation.
use crate::domain::rep::Periods;
use crate::domain::routing::LiveState;

/// The record layout, as Lua's `struct` library spells it. claim.lua, close.lua and rep.lua
/// repeat it (a test checks they agree); the store contract suite on Redis reads back through
/// `decode` what the scripts wrote.
#[cfg(test)]
const FORMAT: &str = "<i4i4di4i4i4i4i4i4i4i4i4i4i4i4i4";
pub const LEN: usize = 68;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepState {
    pub capacity: u32,
    pub load: u32,
    pub last_ms: Option<i64>,
    pub generation: u32,
    /// Per quota period (`rep::PERIODS` order): the limit, the period the count belongs to,
    /// and the count.
    pub quotas: [Option<u32>; 4],
    pub periods: Periods,
    pub counts: [u32; 4],
}

impl RepState {
    /// Decodes one record; None for a free slot or anything that is not one record.
    pub fn decode(b: &[u8]) -> Option<RepState> {
        if b.len() != LEN {
            return None;
        }
        let int = |i: usize| i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let unsigned = |i: usize| u32::try_from(int(i)).ok();
        let last = f64::from_le_bytes(b[8..16].try_into().ok()?);
        let mut s = RepState {
            capacity: unsigned(0)?,
            load: unsigned(4).unwrap_or(0),
            // Milliseconds since 1970 are exact in an f64; "never" is stored as -1.
            last_ms: (last >= 0.0).then_some(last as i64),
            generation: unsigned(16).unwrap_or(0),
            quotas: [None; 4],
            periods: [0; 4],
            counts: [0; 4],
        };
        for k in 0..4 {
            let at = 20 + 12 * k;
            s.quotas[k] = unsigned(at);
            s.periods[k] = int(at + 4);
            s.counts[k] = unsigned(at + 8).unwrap_or(0);
        }
        Some(s)
    }

    /// The record of `slot` in a pool's table, if it still belongs to `generation`.
    pub fn in_table(table: &[u8], (slot, generation): (u32, u32)) -> Option<RepState> {
        let at = usize::try_from(slot).ok()?.checked_mul(LEN)?;
        RepState::decode(table.get(at..at.checked_add(LEN)?)?)
            .filter(|s| s.generation == generation)
    }

    /// Live counters of an optional record for the current `periods` (a count whose period
    /// has moved on reads 0); no record reads as an idle rep.
    pub fn live(s: Option<RepState>, periods: &Periods) -> LiveState {
        s.map_or_else(LiveState::default, |s| {
            LiveState::in_periods(s.load, &s.periods, s.counts, s.last_ms, periods)
        })
    }

    #[cfg(test)]
    fn encode(&self) -> Vec<u8> {
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(&clamp(self.capacity).to_le_bytes());
        out.extend_from_slice(&clamp(self.load).to_le_bytes());
        out.extend_from_slice(&self.last_ms.map_or(-1.0, |m| m as f64).to_le_bytes());
        out.extend_from_slice(&clamp(self.generation).to_le_bytes());
        for k in 0..4 {
            out.extend_from_slice(&self.quotas[k].map_or(-1, clamp).to_le_bytes());
            out.extend_from_slice(&self.periods[k].to_le_bytes());
            out.extend_from_slice(&clamp(self.counts[k]).to_le_bytes());
        }
        out
    }
}

/// A number as the claim script's candidate list carries it: `digits` base-255 digits, each
/// stored as digit + 1, so no byte is NUL (redis-benchmark can send the list as an argument).
pub fn push_digits(out: &mut Vec<u8>, value: u32, digits: u32) {
    for d in (0..digits).rev() {
        let digit = (value / 255u32.pow(d)) % 255;
        out.push(u8::try_from(digit + 1).unwrap_or(u8::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RepState {
        RepState {
            capacity: 7,
            load: 2,
            last_ms: Some(1_795_838_400_123),
            generation: 4,
            quotas: [Some(3), None, Some(40), None],
            periods: [20_785, 2_969, 24_322, 8_107],
            counts: [1, 5, 9, 11],
        }
    }

    #[test]
    fn records_round_trip_and_generations_guard_slots() {
        let s = sample();
        assert_eq!(s.encode().len(), LEN);
        assert_eq!(RepState::decode(&s.encode()), Some(s));
        let fresh = RepState {
            quotas: [None; 4],
            last_ms: None,
            ..s
        };
        assert_eq!(RepState::decode(&fresh.encode()), Some(fresh));
        let live = RepState::live(Some(s), &[20_785, 2_970, 24_322, 8_107]);
        assert_eq!(live.counts, [1, 0, 9, 11], "a new week starts at 0");
        let mut table = fresh.encode();
        table.extend(s.encode());
        assert_eq!(RepState::in_table(&table, (1, 4)), Some(s));
        assert_eq!(RepState::in_table(&table, (1, 3)), None, "stale generation");
        assert_eq!(RepState::in_table(&table, (2, 4)), None, "past the end");
        let mut free = s.encode();
        free[..4].copy_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(RepState::decode(&free), None, "freed slot");
        assert_eq!(RepState::decode(b"7||2|2026-11-28|1|"), None);
    }

    #[test]
    fn digits_are_base_255_without_nul() {
        let mut out = Vec::new();
        push_digits(&mut out, 0, 2);
        push_digits(&mut out, 254, 2);
        push_digits(&mut out, 255, 2);
        push_digits(&mut out, 20_785, 3);
        assert_eq!(out, [1, 1, 1, 255, 2, 1, 1, 82, 131]);
        assert!(!out.contains(&0));
        assert_eq!((82 - 1) * 255 + (131 - 1), 20_785);
    }

    #[test]
    fn every_script_packs_the_same_layout() {
        let line = format!("local S = '{FORMAT}'");
        for (name, script) in [
            ("claim.lua", include_str!("claim.lua")),
            ("events.lua", include_str!("events.lua")),
            ("rep.lua", include_str!("rep.lua")),
        ] {
            assert!(script.contains(&line), "{name} lacks {line}");
            assert!(
                script.contains(&format!("local LEN = {LEN}")),
                "{name} lacks LEN"
            );
        }
    }
}
