//! The deterministic random source the unit-test fuzzers share (`http.rs`, `sysfs.rs`).
//!
//! Deterministic on purpose: every run replays the same inputs, so a failure reproduces from
//! the test name alone, with no dependency and no nightly toolchain.
//!
//! Invariant: compiled for tests only.

/// xorshift64 (Marsaglia's 13/7/17 triple): full period over nonzero states. A fuzzer starts
/// it at a fixed nonzero state of its own.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`, `n` > 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
