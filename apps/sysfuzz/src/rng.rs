//! The fuzzer's random numbers: xorshift64* from a seed, so a run is
//! reproduced by its seed (up to thread interleaving).

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Any seed, zero included, gives a non-zero state.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True once in `n` times on average.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A size around the interesting edges: 0, small, a page, `edge` and
    /// one either side of it, or anything up to `huge`.
    pub fn size(&mut self, edge: usize, huge: usize) -> usize {
        match self.below(8) {
            0 => 0,
            1..=3 => self.below(64) as usize,
            4 => self.below(4097) as usize,
            5 => edge
                .saturating_add(self.below(3) as usize)
                .saturating_sub(1),
            6 => edge,
            _ => match (huge as u64).checked_add(1) {
                Some(n) => self.below(n) as usize,
                None => self.next() as usize,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_numbers_and_zero_seed_works() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        let mut z = Rng::new(0);
        assert_ne!(z.next(), z.next());
    }

    #[test]
    fn sizes_hit_the_edges_and_stay_in_range() {
        let mut r = Rng::new(3);
        let sizes: alloc::vec::Vec<usize> = (0..10_000).map(|_| r.size(100, 1000)).collect();
        for edge in [0, 99, 100, 101] {
            assert!(sizes.contains(&edge), "{edge} never chosen");
        }
        assert!(sizes.iter().all(|&s| s <= 4096));
    }
}
