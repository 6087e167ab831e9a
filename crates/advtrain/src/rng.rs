//! Seeded, host-side randomness.
//!
//! Every random choice advtrain makes (shuffling, augmentation, random starts, target
//! classes) draws from one explicitly seeded generator, so a run is reproducible from its
//! seed and the generator state can be checkpointed with the run.

use rand::{Rng as _, SeedableRng};

/// The generator advtrain uses everywhere: ChaCha8 is fast, portable and its stream is
/// fixed across platforms and `rand` versions.
pub type AdvRng = rand_chacha::ChaCha8Rng;

/// A generator seeded from `seed`.
pub fn seeded(seed: u64) -> AdvRng {
    AdvRng::seed_from_u64(seed)
}

/// A generator for a sub-task (e.g. the validation split or the evaluation attack),
/// independent of the main stream but still determined by the run's seed.
pub fn derived(seed: u64, stream: u64) -> AdvRng {
    let mut rng = AdvRng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// `n` samples uniform in `[lo, hi)`; `lo` itself, without drawing, when `lo == hi` (a
/// ball of radius 0, as ε warm-up starts with: an empty range would panic).
pub fn uniform_vec(rng: &mut AdvRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    if lo == hi {
        return vec![lo; n];
    }
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `n` standard normal samples (Box-Muller; no extra dependency).
pub fn normal_vec(rng: &mut AdvRng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// A random permutation of `0..n` (Fisher-Yates).
pub fn permutation(rng: &mut AdvRng, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        idx.swap(i, j);
    }
    idx
}

/// A generator's exact position, for checkpoints: restoring it continues the same stream.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RngState {
    /// The 32-byte key, hex.
    pub seed: String,
    /// ChaCha stream number (the `stream` of [`derived`]; 0 for [`seeded`]).
    pub stream: u64,
    /// Word position in the stream (a u128, as decimal text: JSON numbers cannot hold it).
    pub word_pos: String,
}

impl RngState {
    /// Records `rng`'s key, stream and position.
    pub fn of(rng: &AdvRng) -> Self {
        Self {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// The generator at this position; `None` if the record is malformed.
    pub fn restore(&self) -> Option<AdvRng> {
        if self.seed.len() != 64 || !self.seed.is_ascii() {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(&self.seed[2 * i..2 * i + 2], 16).ok()?;
        }
        let mut rng = AdvRng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().ok()?);
        Some(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn rng_state_round_trip_continues_the_stream() {
        let mut a = derived(7, 3);
        for _ in 0..13 {
            let _: u32 = a.random();
        }
        let mut b = RngState::of(&a).restore().unwrap();
        let xs: Vec<u64> = (0..5).map(|_| a.random()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.random()).collect();
        assert_eq!(xs, ys);
        let mut bad = RngState::of(&a);
        bad.seed.truncate(10);
        assert!(bad.restore().is_none());
    }

    #[test]
    fn a_zero_width_range_gives_its_value_without_drawing() {
        let mut a = seeded(1);
        let b = seeded(1);
        assert_eq!(uniform_vec(&mut a, 3, 0.0, 0.0), vec![0.0; 3]);
        assert_eq!(RngState::of(&a), RngState::of(&b), "no number was drawn");
        let v = uniform_vec(&mut a, 100, -0.5, 0.5);
        assert!(v.iter().all(|x| (-0.5..0.5).contains(x)));
    }
}
