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
    /// KEYS of claim.lua, in order.
    pub(super) fn claim(&self, lead: &str) -> [String; 5] {
        [
            self.lead(lead),
            self.k("table"),
            self.k("queue"),
            self.k("seq"),
            self.k("slots"),
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
