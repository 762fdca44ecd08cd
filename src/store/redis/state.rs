//! A rep's live state as claim.lua, close.lua and rep.lua store it: one 28-byte hash field,
//! `struct.pack('<i4i4i4i4i4d', capacity, quota, load, period, count, last)`.
//!
//! Binary, because the claim script's cost is Lua work per rep it reads, not bytes: one
//! `struct.unpack` is a single C call that yields numbers, where splitting a text field made
//! six strings and four `tonumber`s (about 4x the time, measured in Redis).

/// The layout, as Lua's `struct` library spells it. claim.lua, close.lua and rep.lua repeat
/// it (a test checks they agree); the store contract suite on Redis reads back through
/// `decode` what the scripts wrote.
#[cfg(test)]
const FORMAT: &str = "<i4i4i4i4i4d";
pub const LEN: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepState {
    pub capacity: u32,
    pub quota: Option<u32>,
    pub load: u32,
    /// Quota period (local day number) that `count` belongs to.
    pub period: i32,
    pub count: u32,
    pub last_ms: Option<i64>,
}

impl RepState {
    /// A rep that has never been assigned anything.
    #[cfg(test)]
    fn fresh(capacity: u32, quota: Option<u32>) -> RepState {
        RepState {
            capacity,
            quota,
            load: 0,
            period: i32::MIN,
            count: 0,
            last_ms: None,
        }
    }

    /// Decodes a stored field; None for anything that is not exactly one packed state.
    pub fn decode(b: &[u8]) -> Option<RepState> {
        if b.len() != LEN {
            return None;
        }
        let int = |i: usize| i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let unsigned = |i: usize| u32::try_from(int(i)).ok();
        let last = f64::from_le_bytes(b[20..28].try_into().ok()?);
        Some(RepState {
            capacity: unsigned(0).unwrap_or(0),
            quota: unsigned(4),
            load: unsigned(8).unwrap_or(0),
            period: int(12),
            count: unsigned(16).unwrap_or(0),
            // Milliseconds since 1970 are exact in an f64; "never" is stored as -1.
            last_ms: (last >= 0.0).then_some(last as i64),
        })
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
        out
    }

    /// New assignments in `period` (0 once the period has moved on).
    pub fn count_in(&self, period: i32) -> u32 {
        if self.period == period { self.count } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_decode_round_trip() {
        let s = RepState {
            capacity: 7,
            quota: Some(3),
            load: 2,
            period: 20_420,
            count: 1,
            last_ms: Some(1_795_838_400_123),
        };
        assert_eq!(s.encode().len(), LEN);
        assert_eq!(RepState::decode(&s.encode()), Some(s));
        let f = RepState::fresh(4, None);
        assert_eq!(RepState::decode(&f.encode()), Some(f));
        assert_eq!(f.count_in(20_420), 0);
        assert_eq!(s.count_in(20_420), 1);
        assert_eq!(s.count_in(20_421), 0);
        assert_eq!(RepState::decode(b"7||2|2026-11-28|1|"), None);
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
