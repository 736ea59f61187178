//! A lazily built DFA over [`Regex`]'s automaton: each set of live states
//! met becomes one DFA state whose 256-entry table fills in as bytes come,
//! so once a line's state sets are known a byte costs one table lookup.
//! The cache holds at most [`MAX_STATES`]; past that it starts over, so
//! memory stays bounded and time stays linear (at worst one automaton
//! step per byte, as without the cache).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::regex::Regex;
use crate::regex::States;

/// The most DFA states kept (each has a 1 KiB table).
pub const MAX_STATES: usize = 1024;

const UNKNOWN: u32 = u32::MAX;

/// Matches lines against one [`Regex`], remembering what it learns.
pub struct Matcher<'r> {
    regex: &'r Regex,
    /// Each DFA state's automaton states, sorted.
    sets: Vec<Vec<usize>>,
    ids: BTreeMap<Vec<usize>, usize>,
    table: Vec<[u32; 256]>,
    accepts: Vec<bool>,
    start: Option<usize>,
    scratch: States,
}

impl<'r> Matcher<'r> {
    pub fn new(regex: &'r Regex) -> Matcher<'r> {
        Matcher {
            regex,
            sets: Vec::new(),
            ids: BTreeMap::new(),
            table: Vec::new(),
            accepts: Vec::new(),
            start: None,
            scratch: States::new(regex.state_count()),
        }
    }

    /// Whether the pattern matches somewhere in `line` (without its `\n`).
    pub fn is_match(&mut self, line: &[u8]) -> bool {
        let early = !self.regex.at_end();
        let mut s = match self.start {
            Some(s) => s,
            None => self.intern(self.regex.start().list),
        };
        self.start = Some(s);
        for &b in line {
            if early && self.accepts[s] {
                return true;
            }
            if self.sets[s].is_empty() {
                return false;
            }
            s = match self.table[s][usize::from(b)] {
                UNKNOWN => self.fill(s, b),
                t => t as usize,
            };
        }
        self.accepts[s]
    }

    /// Works out (and remembers) where state `s` goes on `b`.
    fn fill(&mut self, s: usize, b: u8) -> usize {
        self.regex.step(&self.sets[s], b, &mut self.scratch);
        let next = self.scratch.list.clone();
        if self.sets.len() >= MAX_STATES && !self.ids.contains_key(&sorted(next.clone())) {
            self.forget();
            return self.intern(next);
        }
        let t = self.intern(next);
        self.table[s][usize::from(b)] = t as u32;
        t
    }

    /// The DFA state for a set of automaton states.
    fn intern(&mut self, set: Vec<usize>) -> usize {
        let set = sorted(set);
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.len();
        self.accepts.push(self.regex.accepts(&set));
        self.table.push([UNKNOWN; 256]);
        self.ids.insert(set.clone(), id);
        self.sets.push(set);
        id
    }

    fn forget(&mut self) {
        self.sets.clear();
        self.ids.clear();
        self.table.clear();
        self.accepts.clear();
        self.start = None;
    }
}

fn sorted(mut set: Vec<usize>) -> Vec<usize> {
    set.sort_unstable();
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regex::Options;
    use alloc::string::String;

    /// A small deterministic generator (no crates for randomness).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as usize % n
        }
    }

    #[test]
    fn the_cache_agrees_with_the_automaton() {
        let pieces = ["a", "b", ".", "*", "+", "?", "[ab]", "[^a]", "\\.", "c"];
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let mut pattern = String::new();
            if rng.below(4) == 0 {
                pattern.push('^');
            }
            for _ in 0..rng.below(6) {
                pattern.push_str(pieces[rng.below(pieces.len())]);
            }
            if rng.below(4) == 0 {
                pattern.push('$');
            }
            let regex = Regex::new(pattern.as_bytes(), Options::default()).unwrap();
            let mut matcher = Matcher::new(&regex);
            for _ in 0..20 {
                let line: Vec<u8> = (0..rng.below(8)).map(|_| b"abc."[rng.below(4)]).collect();
                assert_eq!(
                    matcher.is_match(&line),
                    regex.is_match(&line),
                    "{pattern:?} on {:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
    }

    #[test]
    fn a_full_cache_starts_over_and_stays_right() {
        // `a.{n}` style patterns need many DFA states: "a" then 12 of ".".
        let pattern = alloc::format!("a{}b", ".".repeat(12));
        let regex = Regex::new(pattern.as_bytes(), Options::default()).unwrap();
        let mut matcher = Matcher::new(&regex);
        let mut rng = Rng(3);
        for _ in 0..300 {
            let line: Vec<u8> = (0..200).map(|_| b"ab"[rng.below(2)]).collect();
            assert_eq!(matcher.is_match(&line), regex.is_match(&line));
            assert!(matcher.sets.len() <= MAX_STATES);
        }
    }
}
