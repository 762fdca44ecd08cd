//! A pool's rep table as the Lua scripts store it: one Redis string per pool holding a
//! 32-byte record per slot, `struct.pack('<i4i4i4i4i4di4', capacity, quota, load, period,
//! count, last, generation)`; the `slots` hash maps rep id -> "slot:generation".
//!
//! One string, because a claim's cost is Lua and Redis work per rep it reads, not bytes: one
//! GET and one `struct.unpack` (a single C call that yields numbers) per rep, where a hash
//! field per rep cost an HMGET conversion and a Lua string per rep (about 4x the time with 20
//! reps, measured in Redis). A freed slot keeps its generation (capacity -1) and the next rep
//! in it gets generation + 1, so a claim built from a stale directory cannot touch another
//! rep's record: the script checks the generation.

/// The record layout, as Lua's `struct` library spells it. claim.lua, close.lua and rep.lua
/// repeat it (a test checks they agree); the store contract suite on Redis reads back through
/// `decode` what the scripts wrote.
#[cfg(test)]
const FORMAT: &str = "<i4i4i4i4i4di4";
pub const LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepState {
    pub capacity: u32,
    pub quota: Option<u32>,
    pub load: u32,
    /// Quota period (local day number) that `count` belongs to.
    pub period: i32,
    pub count: u32,
    pub last_ms: Option<i64>,
    pub generation: u32,
}

impl RepState {
    /// Decodes one record; None for a free slot or anything that is not one record.
    pub fn decode(b: &[u8]) -> Option<RepState> {
        if b.len() != LEN {
            return None;
        }
        let int = |i: usize| i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let unsigned = |i: usize| u32::try_from(int(i)).ok();
        let last = f64::from_le_bytes(b[20..28].try_into().ok()?);
        Some(RepState {
            capacity: unsigned(0)?,
            quota: unsigned(4),
            load: unsigned(8).unwrap_or(0),
            period: int(12),
            count: unsigned(16).unwrap_or(0),
            // Milliseconds since 1970 are exact in an f64; "never" is stored as -1.
            last_ms: (last >= 0.0).then_some(last as i64),
            generation: unsigned(28).unwrap_or(0),
        })
    }

    /// The record of `slot` in a pool's table, if it still belongs to `generation`.
    pub fn in_table(table: &[u8], (slot, generation): (u32, u32)) -> Option<RepState> {
        let at = usize::try_from(slot).ok()?.checked_mul(LEN)?;
        RepState::decode(table.get(at..at.checked_add(LEN)?)?)
            .filter(|s| s.generation == generation)
    }

    /// New assignments in `period` (0 once the period has moved on).
    pub fn count_in(&self, period: i32) -> u32 {
        if self.period == period { self.count } else { 0 }
    }

    /// (load, count in `period`, last assigned ms) of an optional record; no record reads as
    /// an idle rep.
    pub fn live(s: Option<RepState>, period: i32) -> (u32, u32, Option<i64>) {
        s.map_or((0, 0, None), |s| (s.load, s.count_in(period), s.last_ms))
    }

    #[cfg(test)]
    fn encode(&self) -> Vec<u8> {
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(&clamp(self.capacity).to_le_bytes());
        out.extend_from_slice(&self.quota.map_or(-1, clamp).to_le_bytes());
        out.extend_from_slice(&clamp(self.load).to_le_bytes());
        out.extend_from_slice(&self.period.to_le_bytes());
        out.extend_from_slice(&clamp(self.count).to_le_bytes());
        out.extend_from_slice(&self.last_ms.map_or(-1.0, |m| m as f64).to_le_bytes());
        out.extend_from_slice(&clamp(self.generation).to_le_bytes());
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
            quota: Some(3),
            load: 2,
            period: 20_785,
            count: 1,
            last_ms: Some(1_795_838_400_123),
            generation: 4,
        }
    }

    #[test]
    fn records_round_trip_and_generations_guard_slots() {
        let s = sample();
        assert_eq!(s.encode().len(), LEN);
        assert_eq!(RepState::decode(&s.encode()), Some(s));
        let fresh = RepState {
            quota: None,
            last_ms: None,
            ..s
        };
        assert_eq!(RepState::decode(&fresh.encode()), Some(fresh));
        assert_eq!(s.count_in(20_785), 1);
        assert_eq!(s.count_in(20_786), 0);
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
            ("close.lua", include_str!("close.lua")),
            ("rep.lua", include_str!("rep.lua")),
        ] {
            assert!(script.contains(&line), "{name} lacks {line}");
        }
    }
}
