//! Bounded logging of events a guest can repeat at will (accesses a device
//! refuses, a device it breaks again and again): the 1st, 2nd, 4th, 8th...
//! occurrence is logged with its count, so n occurrences cost about
//! log2(n) lines and the log keeps room for everything else.

/// Counts one kind of repeatable event.
#[derive(Debug, Default, Clone, Copy)]
pub struct Repeats {
    count: u64,
}

impl Repeats {
    pub const fn new() -> Repeats {
        Repeats { count: 0 }
    }

    /// Counts one more occurrence; its number if this one is to be logged.
    pub fn note(&mut self) -> Option<u64> {
        self.count = self.count.saturating_add(1);
        self.count.is_power_of_two().then_some(self.count)
    }

    /// Occurrences so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_powers_of_two() {
        let mut r = Repeats::new();
        let logged: alloc::vec::Vec<u64> = (0..1000).filter_map(|_| r.note()).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
        assert_eq!(r.count(), 1000);
    }
}
