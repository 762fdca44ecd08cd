//! Key names of the Redis store: one set per pool, all sharing the pool's hash tag.

/// Key names of one pool; all share the hash tag `{pool}`.
pub(super) struct PoolKeys {
    pub(super) base: String,
}

impl PoolKeys {
    pub(super) fn k(&self, what: &str) -> String {
        format!("{}:{what}", self.base)
    }
    pub(super) fn lead(&self, id: &str) -> String {
        format!("{}:lead:{id}", self.base)
    }
    /// The queue of leads that require the skills of group `group` (see `group_id`).
    pub(super) fn group_queue(&self, group: &str) -> String {
        format!("{}:gq:{group}", self.base)
    }
    /// KEYS of claim.lua, in order.
    pub(super) fn claim(&self, lead: &str, group: &str) -> [String; 12] {
        [
            self.lead(lead),
            self.k("table"),
            self.k("queue"),
            self.k("seq"),
            self.k("slots"),
            self.group_queue(group),
            self.k("groups"),
            self.k("events"),
            self.k("evseq"),
            self.k("due"),
            self.k("held"),
            self.report(),
        ]
    }
    /// The prefix of the pool's report-counter keys ("…:rpt:d<day>", "…:rpt:days", …). It
    /// carries the hash tag, so the keys scripts build from it share the pool's slot.
    pub(super) fn report(&self) -> String {
        self.k("rpt:")
    }
    /// KEYS of close.lua, in order.
    pub(super) fn close(&self, lead: &str, group: &str) -> [String; 11] {
        [
            self.lead(lead),
            self.k("table"),
            self.k("queue"),
            self.k("outcomes"),
            self.k("slots"),
            self.group_queue(group),
            self.k("events"),
            self.k("evseq"),
            self.k("due"),
            self.k("held"),
            self.report(),
        ]
    }
    /// KEYS of step.lua, in order.
    pub(super) fn step(&self, lead: &str, group: &str) -> [String; 12] {
        [
            self.lead(lead),
            self.k("table"),
            self.k("queue"),
            self.k("seq"),
            self.k("slots"),
            self.group_queue(group),
            self.k("events"),
            self.k("evseq"),
            self.k("due"),
            self.k("held"),
            self.k("breaches"),
            self.report(),
        ]
    }
    /// KEYS of rep.lua, in order.
    pub(super) fn rep(&self) -> [String; 4] {
        [
            self.k("reps"),
            self.k("table"),
            self.k("active"),
            self.k("slots"),
        ]
    }
}

/// A short stable name for a set of required skills (sorted, as `Needs` keeps them): the
/// first 8 bytes of its SHA-256, in hex.
pub(super) fn group_id(required_skills: &[String]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for s in required_skills {
        h.update(s.as_bytes());
        h.update([0]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_stable_and_separate_skill_sets() {
        let g = |v: &[&str]| group_id(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(g(&["a", "b"]), g(&["a", "b"]));
        assert_ne!(g(&["a", "b"]), g(&["ab"]));
        assert_ne!(g(&[]), g(&[""]));
        assert_eq!(g(&[]).len(), 16);
    }
}
