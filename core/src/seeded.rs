//! A small seeded random generator (xorshift64) for what must come out the
//! same every run: generated graphs, self-test data, a search's first
//! population, benchmark windows. Not for anything that needs statistical
//! quality or secrecy.

/// Xorshift64 over a nonzero state.
#[derive(Debug, Clone)]
pub struct Seeded(u64);

impl Seeded {
    /// A generator for `seed`, mixed so that nearby seeds start far apart.
    pub fn new(seed: u64) -> Self {
        Seeded(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A generator starting from `state` as it is (nonzero; 0 becomes 1).
    pub fn from_state(state: u64) -> Self {
        Seeded(state.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A value in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_values_in_range() {
        let (mut a, mut b) = (Seeded::new(7), Seeded::new(7));
        let xs: Vec<u64> = (0..100).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| *x < 10));
        assert!((1..10).all(|v| xs.contains(&v)));
        let u = Seeded::new(8).unit();
        assert!((0.0..1.0).contains(&u));
        assert_ne!(Seeded::new(7).next_u64(), Seeded::new(8).next_u64());
        assert_eq!(
            Seeded::from_state(0).next_u64(),
            Seeded::from_state(1).next_u64()
        );
    }
}
