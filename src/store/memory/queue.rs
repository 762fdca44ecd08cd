//! A sorted queue that answers "what place is this?" cheaply at any length: a list of sorted
//! blocks of at most `BLOCK` keys.
//!
//! One sorted Vec made every insert move half the queue (memmove was 16 % of the server's time
//! with 10^5 queued leads); a BTreeSet has no rank. Blocks bound the move to one block, and a
//! rank is a sum over block lengths (n / BLOCK additions) plus a binary search.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const BLOCK: usize = 512;

/// A pool's queue: every lead in one ranked order (for places), and the same keys grouped by
/// the skills a lead requires. All leads of a group have the same candidates, so when the
/// group's best lead finds no rep with room, none of the group can: a drain looks at one
/// head per group instead of walking the queue.
#[derive(Debug)]
pub struct PoolQueue<K> {
    all: BlockQueue<K>,
    groups: BTreeMap<Vec<String>, BTreeSet<K>>,
}

impl<K> Default for PoolQueue<K> {
    fn default() -> Self {
        PoolQueue {
            all: BlockQueue::default(),
            groups: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> PoolQueue<K> {
    /// Inserts `key` into the queue and its group; returns its 0-based place.
    pub fn insert(&mut self, key: K, group: &[String]) -> usize {
        self.groups
            .entry(group.to_vec())
            .or_default()
            .insert(key.clone());
        self.all.insert(key)
    }

    pub fn remove(&mut self, key: &K, group: &[String]) {
        self.all.remove(key);
        if let Some(set) = self.groups.get_mut(group) {
            set.remove(key);
            if set.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    pub fn position(&self, key: &K) -> Option<usize> {
        self.all.position(key)
    }

    /// Keys from 0-based place `from` on, in queue order.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &K> {
        self.all.iter_from(from)
    }

    /// The best key of each group, with the group's required skills.
    pub fn heads(&self) -> impl Iterator<Item = (&[String], &K)> {
        self.groups
            .iter()
            .filter_map(|(g, set)| Some((g.as_slice(), set.first()?)))
    }
}

/// Serialized as its groups (every key is in exactly one); the ranked order is rebuilt.
impl<K: Serialize> Serialize for PoolQueue<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(&self.groups)
    }
}

impl<'de, K: Deserialize<'de> + Ord + Clone> Deserialize<'de> for PoolQueue<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let groups = Vec::<(Vec<String>, Vec<K>)>::deserialize(d)?;
        let mut q = PoolQueue::default();
        for (group, keys) in groups {
            for key in keys {
                q.insert(key, &group);
            }
        }
        Ok(q)
    }
}

#[derive(Debug)]
pub struct BlockQueue<K> {
    blocks: Vec<Vec<K>>,
}

impl<K> Default for BlockQueue<K> {
    fn default() -> Self {
        BlockQueue { blocks: Vec::new() }
    }
}

impl<K: Ord> BlockQueue<K> {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum()
    }

    /// The block that holds `key`, or would: the first whose last key is not below it.
    fn block_of(&self, key: &K) -> usize {
        let b = self
            .blocks
            .partition_point(|blk| blk.last().is_some_and(|last| last < key));
        b.min(self.blocks.len().saturating_sub(1))
    }

    fn before(&self, block: usize) -> usize {
        self.blocks[..block].iter().map(Vec::len).sum()
    }

    /// Inserts `key` and returns its 0-based place.
    pub fn insert(&mut self, key: K) -> usize {
        if self.blocks.is_empty() {
            self.blocks.push(Vec::with_capacity(BLOCK));
        }
        let b = self.block_of(&key);
        let blk = &mut self.blocks[b];
        let i = blk.binary_search(&key).unwrap_or_else(|i| i);
        blk.insert(i, key);
        if blk.len() > BLOCK {
            let tail = blk.split_off(BLOCK / 2);
            self.blocks.insert(b + 1, tail);
        }
        self.before(b) + i
    }

    /// The 0-based place of `key`, if queued.
    pub fn position(&self, key: &K) -> Option<usize> {
        if self.blocks.is_empty() {
            return None;
        }
        let b = self.block_of(key);
        let i = self.blocks[b].binary_search(key).ok()?;
        Some(self.before(b) + i)
    }

    pub fn remove(&mut self, key: &K) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let b = self.block_of(key);
        let Ok(i) = self.blocks[b].binary_search(key) else {
            return false;
        };
        self.blocks[b].remove(i);
        if self.blocks[b].is_empty() {
            self.blocks.remove(b);
        }
        true
    }

    /// Keys from 0-based place `from` on.
    pub fn iter_from(&self, mut from: usize) -> impl Iterator<Item = &K> {
        let mut skip = 0;
        for blk in &self.blocks {
            if from < blk.len() {
                break;
            }
            from -= blk.len();
            skip += 1;
        }
        self.blocks
            .iter()
            .skip(skip)
            .flat_map(|b| b.iter())
            .skip(from)
    }

    /// The key at 0-based place `i`.
    #[cfg(test)]
    pub fn get(&self, mut i: usize) -> Option<&K> {
        for blk in &self.blocks {
            if i < blk.len() {
                return blk.get(i);
            }
            i -= blk.len();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain sorted Vec, through enough inserts and removals to split and empty
    /// blocks, in a scrambled order.
    #[test]
    fn agrees_with_a_sorted_vec() {
        let mut q = BlockQueue::default();
        let mut v: Vec<u64> = Vec::new();
        let scramble = |i: u64| i.wrapping_mul(2_654_435_761) % 1_000_003;
        for i in 0..5_000u64 {
            let k = scramble(i);
            let at = q.insert(k);
            let want = v.partition_point(|x| *x < k);
            v.insert(want, k);
            assert_eq!(at, want);
        }
        assert_eq!(q.len(), v.len());
        for i in (0..5_000u64).step_by(3) {
            let k = scramble(i);
            assert!(q.remove(&k));
            v.retain(|x| *x != k);
        }
        assert!(!q.remove(&1_000_004));
        assert_eq!(q.len(), v.len());
        for (i, k) in v.iter().enumerate() {
            assert_eq!(q.position(k), Some(i));
            assert_eq!(q.get(i), Some(k));
        }
        assert_eq!(q.get(v.len()), None);
        assert_eq!(q.position(&1_000_004), None);
        for k in v.clone() {
            assert!(q.remove(&k));
        }
        assert_eq!((q.len(), q.get(0), q.position(&1)), (0, None, None));
    }
}
