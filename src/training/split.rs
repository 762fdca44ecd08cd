//! Stratified, seeded train/holdout split with our own PRNG, so the split never changes with
//! a dependency's version (the artifact must be reproducible byte for byte).

/// splitmix64: tiny, well-known, and stable forever.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0), by rejection to avoid modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
}

pub fn shuffle<T>(v: &mut [T], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Splits row indices into `k` folds, each with about the same share of each class. Each fold
/// comes back sorted.
pub fn stratified_folds(labels: &[bool], k: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = SplitMix64::new(seed ^ 0xC0FF_EE00);
    let mut folds = vec![Vec::new(); k];
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        shuffle(&mut idx, &mut rng);
        for (n, i) in idx.into_iter().enumerate() {
            folds[n % k].push(i);
        }
    }
    folds.iter_mut().for_each(|f| f.sort_unstable());
    folds
}

/// Splits row indices into (train, holdout), keeping each class's share in both. Both lists
/// come back sorted.
pub fn stratified(labels: &[bool], holdout_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = SplitMix64::new(seed);
    let (mut train, mut hold) = (Vec::new(), Vec::new());
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        shuffle(&mut idx, &mut rng);
        let n_hold = (idx.len() as f64 * holdout_fraction).round() as usize;
        hold.extend_from_slice(&idx[..n_hold]);
        train.extend_from_slice(&idx[n_hold..]);
    }
    train.sort_unstable();
    hold.sort_unstable();
    (train, hold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_class_shares_and_is_seeded() {
        let labels: Vec<bool> = (0..1000).map(|i| i % 10 == 0).collect();
        let (train, hold) = stratified(&labels, 0.2, 42);
        assert_eq!(hold.len(), 200);
        assert_eq!(train.len(), 800);
        assert_eq!(hold.iter().filter(|&&i| labels[i]).count(), 20);
        assert_eq!(stratified(&labels, 0.2, 42), (train.clone(), hold.clone()));
        assert_ne!(stratified(&labels, 0.2, 43).1, hold);
        let mut all: Vec<usize> = train.into_iter().chain(hold).collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn splitmix_matches_reference_values() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }
}
