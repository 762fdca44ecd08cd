//! The decision record's candidate list: the chosen rep, the nearest rep of every other
//! verdict and the best runners-up, within a limit; the rest counted per verdict.
use super::{CandidateRecord, Verdict};

/// How many candidates a decision record lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Explain {
    /// At most `routing.record_candidates`; the rest are counted per verdict.
    #[default]
    Summary,
    /// Every rep of the pool.
    Full,
}

impl Explain {
    /// The number of records to keep, given `routing.record_candidates`.
    pub fn limit(self, record_candidates: usize) -> usize {
        match self {
            Explain::Summary => record_candidates,
            Explain::Full => usize::MAX,
        }
    }
}

/// Records left out of a summary: how many had each verdict, in `Verdict` order.
pub type Omitted = Vec<(Verdict, u32)>;

/// Keeps at most `limit` of `records` (in ranking order), chosen so the list still explains
/// the decision: first the chosen rep, then the first (nearest) record of each other verdict,
/// then the best of the rest in order. The kept records stay in their order. Returns what was
/// left out, per verdict.
pub fn summarise(records: &mut Vec<CandidateRecord>, limit: usize) -> Omitted {
    let Some(keep) = keep_mask(records, limit) else {
        return Vec::new();
    };
    let mut counts = [0u32; Verdict::COUNT];
    let mut i = 0;
    records.retain(|r| {
        let kept = keep[i];
        i += 1;
        if !kept {
            counts[r.verdict as usize] += 1;
        }
        kept
    });
    by_verdict(&counts)
}

/// `summarise` without touching `records`: copies of the kept ones, and what was left out.
pub fn summary_of(records: &[CandidateRecord], limit: usize) -> (Vec<CandidateRecord>, Omitted) {
    let Some(keep) = keep_mask(records, limit) else {
        return (records.to_vec(), Vec::new());
    };
    let kept = records
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(r, _)| r.clone())
        .collect();
    let mut counts = [0u32; Verdict::COUNT];
    for (r, k) in records.iter().zip(&keep) {
        if !k {
            counts[r.verdict as usize] += 1;
        }
    }
    (kept, by_verdict(&counts))
}

/// Which records a summary keeps (None: all of them, nothing to leave out).
fn keep_mask(records: &[CandidateRecord], limit: usize) -> Option<Vec<bool>> {
    if records.len() <= limit {
        return None;
    }
    let mut keep = vec![false; records.len()];
    let mut budget = limit;
    let mut take = |i: usize, keep: &mut Vec<bool>| {
        if budget > 0 && !keep[i] {
            keep[i] = true;
            budget -= 1;
        }
    };
    if let Some(i) = records.iter().position(|r| r.verdict == Verdict::Chosen) {
        take(i, &mut keep);
    }
    let mut seen = [false; Verdict::COUNT];
    for (i, r) in records.iter().enumerate() {
        if !seen[r.verdict as usize] {
            seen[r.verdict as usize] = true;
            take(i, &mut keep);
        }
    }
    for i in 0..records.len() {
        take(i, &mut keep);
    }
    Some(keep)
}

fn by_verdict(counts: &[u32; Verdict::COUNT]) -> Omitted {
    Verdict::ALL
        .iter()
        .filter(|v| counts[**v as usize] > 0)
        .map(|v| (*v, counts[*v as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, verdict: Verdict) -> CandidateRecord {
        CandidateRecord {
            rep_id: id.into(),
            match_score: 0.0,
            verdict,
            detail: Default::default(),
            load: 0,
            capacity: 0,
        }
    }

    fn ids(rs: &[CandidateRecord]) -> Vec<&str> {
        rs.iter().map(|r| r.rep_id.as_str()).collect()
    }

    #[test]
    fn a_summary_keeps_the_winner_one_of_each_verdict_then_runners_up() {
        let mut rs = vec![record("lower0", Verdict::LowerMatch)];
        rs.extend((1..6).map(|i| record(&format!("lower{i}"), Verdict::LowerMatch)));
        rs.push(record("win", Verdict::Chosen));
        rs.extend((0..4).map(|i| record(&format!("full{i}"), Verdict::AtCapacity)));
        rs.extend((0..3).map(|i| record(&format!("off{i}"), Verdict::OffShift)));
        let mut s = rs.clone();
        let omitted = summarise(&mut s, 5);
        assert_eq!(ids(&s), ["lower0", "lower1", "win", "full0", "off0"]);
        assert_eq!(
            omitted,
            [
                (Verdict::OffShift, 2),
                (Verdict::AtCapacity, 3),
                (Verdict::LowerMatch, 4)
            ]
        );
        let total: u32 = omitted.iter().map(|(_, n)| n).sum();
        assert_eq!(total as usize + s.len(), rs.len());
    }

    #[test]
    fn a_tight_limit_still_keeps_the_winner_first_in_priority() {
        let mut rs: Vec<_> = (0..9)
            .map(|i| record(&format!("r{i}"), Verdict::AtCapacity))
            .collect();
        rs.push(record("win", Verdict::Chosen));
        let omitted = summarise(&mut rs, 2);
        assert_eq!(ids(&rs), ["r0", "win"]);
        assert_eq!(omitted, [(Verdict::AtCapacity, 8)]);
        let mut none = vec![record("a", Verdict::Inactive)];
        assert_eq!(summarise(&mut none, 0), [(Verdict::Inactive, 1)]);
        assert!(none.is_empty());
    }

    #[test]
    fn a_short_list_or_a_full_explanation_is_left_whole() {
        let rs: Vec<_> = (0..4)
            .map(|i| record(&format!("r{i}"), Verdict::LowerMatch))
            .collect();
        let mut s = rs.clone();
        assert!(summarise(&mut s, 4).is_empty());
        assert_eq!(s, rs);
        assert!(summarise(&mut s, Explain::Full.limit(1)).is_empty());
        assert_eq!(Explain::Summary.limit(10), 10);
    }
}
