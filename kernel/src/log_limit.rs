//! Kernel log rate limits (see `klog`): each tag (a component, or the kernel) may write a burst
//! of lines, then a steady rate; what is over is dropped and counted, and
//! the count is reported with the tag's next line. A component logging in a
//! loop (or a guest or client that makes it warn on every request) costs
//! the console a bounded share.

/// Lines a tag may write at once.
pub const BURST: u32 = 200;
/// Lines a tag may write per second, on average, after a burst.
pub const PER_SECOND: u64 = 100;
/// How many tags are tracked; more tags share the least recently used slot.
const TAGS: usize = 32;

#[derive(Clone, Copy)]
struct Bucket {
    /// The tag's address and length: tags are `'static` names.
    tag: (usize, usize),
    tokens: u32,
    refilled_ns: u64,
    dropped: u64,
    used_ns: u64,
}

const EMPTY: Bucket = Bucket {
    tag: (0, 0),
    tokens: BURST,
    refilled_ns: 0,
    dropped: 0,
    used_ns: 0,
};

pub struct RateLimit {
    buckets: [Bucket; TAGS],
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it; `suppressed` lines of this tag were dropped before it.
    Write {
        suppressed: u64,
    },
    Drop,
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit::new()
    }
}

impl RateLimit {
    pub const fn new() -> RateLimit {
        RateLimit {
            buckets: [EMPTY; TAGS],
        }
    }

    pub fn check(&mut self, tag: &str, now_ns: u64) -> Verdict {
        let key = (tag.as_ptr() as usize, tag.len());
        let bucket = self.bucket(key, now_ns);
        let ns_per_token = 1_000_000_000 / PER_SECOND;
        let earned = now_ns.saturating_sub(bucket.refilled_ns) / ns_per_token;
        if earned > 0 {
            bucket.tokens = (bucket.tokens as u64 + earned).min(BURST as u64) as u32;
            bucket.refilled_ns = now_ns;
        }
        bucket.used_ns = now_ns;
        if bucket.tokens == 0 {
            bucket.dropped += 1;
            return Verdict::Drop;
        }
        bucket.tokens -= 1;
        let suppressed = core::mem::take(&mut bucket.dropped);
        Verdict::Write { suppressed }
    }

    fn bucket(&mut self, key: (usize, usize), now_ns: u64) -> &mut Bucket {
        let index = match self.buckets.iter().position(|b| b.tag == key) {
            Some(i) => i,
            None => {
                let lru = (0..TAGS)
                    .min_by_key(|&i| self.buckets[i].used_ns)
                    .unwrap_or(0);
                self.buckets[lru] = Bucket {
                    tag: key,
                    refilled_ns: now_ns,
                    ..EMPTY
                };
                lru
            }
        };
        &mut self.buckets[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate_then_the_count() {
        let mut limit = RateLimit::new();
        let tag = "chatty";
        for _ in 0..BURST {
            assert_eq!(limit.check(tag, 0), Verdict::Write { suppressed: 0 });
        }
        for _ in 0..10 {
            assert_eq!(limit.check(tag, 0), Verdict::Drop);
        }
        // One token per 1/PER_SECOND s.
        let later = 1_000_000_000 / PER_SECOND;
        assert_eq!(limit.check(tag, later), Verdict::Write { suppressed: 10 });
        assert_eq!(limit.check(tag, later), Verdict::Drop);
    }

    #[test]
    fn one_tag_does_not_silence_another() {
        let mut limit = RateLimit::new();
        for _ in 0..BURST * 3 {
            let _ = limit.check("flood", 5);
        }
        assert_eq!(limit.check("quiet", 5), Verdict::Write { suppressed: 0 });
    }

    #[test]
    fn more_tags_than_slots_still_work() {
        let mut limit = RateLimit::new();
        let names: [&str; 40] =
            core::array::from_fn(|i| ["a", "b", "c", "d", "e", "f", "g", "h"][i % 8]);
        let owned: [alloc::string::String; 40] =
            core::array::from_fn(|i| alloc::format!("{}{i}", names[i]));
        for (t, name) in owned.iter().enumerate() {
            assert_eq!(
                limit.check(name, t as u64),
                Verdict::Write { suppressed: 0 }
            );
        }
    }
}
