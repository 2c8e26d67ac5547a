//! The random number generator of the workspace and seed splitting for parallel code.
//!
//! Every random function takes an RNG argument; nothing draws from a global or thread-local
//! source. [`FmRng`] (ChaCha8) is the seeded generator the trainer and CLI use: it is portable
//! (same bits on every platform) and serialisable (a checkpoint stores its state).
//!
//! Parallel code never gives each *thread* its own stream (the split would depend on the
//! thread count); it derives one seed per *chunk* of the work with [`chunk_seeds`] on the
//! calling thread, so results are identical for any number of threads.

use rand::{Rng, SeedableRng};

/// The workspace's seeded RNG: ChaCha with 8 rounds (portable, serialisable, fast).
pub type FmRng = rand_chacha::ChaCha8Rng;

/// An [`FmRng`] seeded from a `u64`.
pub fn seeded(seed: u64) -> FmRng {
    FmRng::seed_from_u64(seed)
}

/// `n` seeds drawn from `rng`, one per chunk of a parallel computation.
///
/// ```
/// let mut a = fm_core::rng::seeded(3);
/// let mut b = fm_core::rng::seeded(3);
/// assert_eq!(fm_core::rng::chunk_seeds(&mut a, 4), fm_core::rng::chunk_seeds(&mut b, 4));
/// ```
pub fn chunk_seeds<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<u64> {
    (0..n).map(|_| rng.random()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_stream_is_pinned() {
        // Value stability: a change of generator or seeding would change these bits and every
        // reproduced result with them.
        let mut rng = seeded(0);
        let first: u64 = rng.random();
        let mut again = seeded(0);
        assert_eq!(first, again.random::<u64>());
        let other: u64 = seeded(1).random();
        assert_ne!(first, other);
        // Pinned once from this implementation; a silent change of the stream breaks them.
        assert_eq!(first, 0xb585_f767_a79a_3b6c);
        assert_eq!(other, 0x6709_4cea_8ca4_0db1);
    }
}
