//! grep's patterns: literal bytes, `.`, bracket sets (`[abc]`, `[a-z]`,
//! `[^...]`, `[[:digit:]]`), the repeats `*`, `+` and `?` on the item
//! before them, `^` at the start and `$` at the end, `\` making the next
//! byte literal. No groups or alternation, so a pattern is a sequence of
//! items and its automaton has one state per item.
//!
//! Matching follows that automaton on all states at once (Thompson's
//! construction): each byte of the line moves the set of live states
//! ([`Regex::step`]), so time is linear in the line for any pattern, with
//! no backtracking; [`crate::dfa::Matcher`] caches those steps.
//! Bytes, not characters: `.` matches one byte of a UTF-8 sequence.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// A set of bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Set([u64; 4]);

impl Set {
    fn empty() -> Set {
        Set([0; 4])
    }
    fn add(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    fn has(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }
    fn invert(&mut self) {
        for w in &mut self.0 {
            *w = !*w;
        }
    }
    /// Adds the other case of every ASCII letter in the set.
    fn fold_case(&mut self) {
        for b in 0..=255u8 {
            if self.has(b) {
                self.add(b.to_ascii_lowercase());
                self.add(b.to_ascii_uppercase());
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Atom {
    Byte(u8),
    Any,
    Set(Set),
}

impl Atom {
    fn matches(&self, b: u8) -> bool {
        match self {
            Atom::Byte(x) => *x == b,
            Atom::Any => true,
            Atom::Set(s) => s.has(b),
        }
    }
}

/// An atom that must appear once (`!optional`), or may be skipped, and
/// may repeat (`many`).
#[derive(Clone, Debug)]
struct Item {
    atom: Atom,
    optional: bool,
    many: bool,
}

/// How to read a pattern.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Every byte literal (`grep -F`).
    pub fixed: bool,
    /// ASCII letters match either case (`grep -i`).
    pub ignore_case: bool,
}

/// A compiled pattern.
#[derive(Debug)]
pub struct Regex {
    /// After compiling, `many` items are never `!optional` (`a+` is `aa*`).
    items: Vec<Item>,
    /// `reach[i]`: the last state reachable from state `i` without
    /// reading (over optional items); state `items.len()` accepts.
    reach: Vec<usize>,
    at_start: bool,
    at_end: bool,
}

impl Regex {
    /// Compiles `pattern`; the error says what is wrong with it.
    pub fn new(pattern: &[u8], options: Options) -> Result<Regex, String> {
        let (items, at_start, at_end) = if options.fixed {
            let items = pattern.iter().map(|&b| one(Atom::Byte(b))).collect();
            (items, false, false)
        } else {
            parse(pattern, options.ignore_case)?
        };
        let mut expanded = Vec::new();
        for mut item in items {
            if options.ignore_case {
                item.atom = fold(item.atom);
            }
            if item.many && !item.optional {
                expanded.push(one(item.atom.clone()));
                item.optional = true;
            }
            expanded.push(item);
        }
        let mut reach = alloc::vec![expanded.len(); expanded.len() + 1];
        for i in (0..expanded.len()).rev() {
            reach[i] = if expanded[i].optional {
                reach[i + 1]
            } else {
                i
            };
        }
        Ok(Regex {
            items: expanded,
            reach,
            at_start,
            at_end,
        })
    }

    /// Whether the pattern matches somewhere in `line` (without its `\n`),
    /// simulating the automaton byte by byte: the reference the tests hold
    /// [`crate::dfa::Matcher`] (which caches these steps) to.
    #[cfg(test)]
    pub fn is_match(&self, line: &[u8]) -> bool {
        let mut now = self.start();
        let mut next = States::new(self.state_count());
        for &b in line {
            if self.accepts(&now.list) && !self.at_end {
                return true;
            }
            self.step(&now.list, b, &mut next);
            core::mem::swap(&mut now, &mut next);
            if now.list.is_empty() {
                return false;
            }
        }
        self.accepts(&now.list)
    }

    /// How many states the automaton has (the last one accepts).
    pub fn state_count(&self) -> usize {
        self.items.len() + 1
    }

    /// Whether the match must end at the end of the line (`$`).
    pub fn at_end(&self) -> bool {
        self.at_end
    }

    /// The states live before reading anything.
    pub fn start(&self) -> States {
        let mut states = States::new(self.state_count());
        states.add_closure(0, &self.reach);
        states
    }

    /// Whether `states` include the accepting one.
    pub fn accepts(&self, states: &[usize]) -> bool {
        states.contains(&self.items.len())
    }

    /// Into `next`: the states live after reading `b` in `now`, and (when
    /// not anchored at the start) a fresh attempt starting after `b`.
    pub fn step(&self, now: &[usize], b: u8, next: &mut States) {
        next.clear();
        for &s in now {
            if s < self.items.len() && self.items[s].atom.matches(b) {
                let to = if self.items[s].many { s } else { s + 1 };
                next.add_closure(to, &self.reach);
            }
        }
        if !self.at_start {
            next.add_closure(0, &self.reach);
        }
    }
}

/// The live states of the automaton, as a list and a membership table.
pub struct States {
    pub list: Vec<usize>,
    member: Vec<bool>,
}

impl States {
    pub fn new(n: usize) -> States {
        States {
            list: Vec::with_capacity(n),
            member: alloc::vec![false; n],
        }
    }
    fn clear(&mut self) {
        for &s in &self.list {
            self.member[s] = false;
        }
        self.list.clear();
    }
    /// Adds `s` and the states reachable from it without reading.
    fn add_closure(&mut self, s: usize, reach: &[usize]) {
        for t in s..=reach[s] {
            if !self.member[t] {
                self.member[t] = true;
                self.list.push(t);
            }
        }
    }
}

fn one(atom: Atom) -> Item {
    Item {
        atom,
        optional: false,
        many: false,
    }
}

fn fold(atom: Atom) -> Atom {
    let mut set = match atom {
        Atom::Byte(b) if b.is_ascii_alphabetic() => {
            let mut s = Set::empty();
            s.add(b);
            s
        }
        other => return other,
    };
    set.fold_case();
    Atom::Set(set)
}

/// The items, and whether the pattern is anchored at the start and end.
fn parse(pattern: &[u8], ignore_case: bool) -> Result<(Vec<Item>, bool, bool), String> {
    let at_start = pattern.first() == Some(&b'^');
    let mut body = &pattern[usize::from(at_start)..];
    let at_end = body.last() == Some(&b'$') && !escaped_end(body);
    if at_end {
        body = &body[..body.len() - 1];
    }
    let mut items: Vec<Item> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let atom = match body[i] {
            q @ (b'*' | b'+' | b'?') if !items.is_empty() => {
                repeat(items.last_mut(), q);
                i += 1;
                continue;
            }
            b'\\' => {
                i += 1;
                Atom::Byte(*body.get(i).ok_or("the pattern ends with a lone \\")?)
            }
            b'.' => Atom::Any,
            b'[' => {
                let (set, end) = bracket(body, i + 1, ignore_case)?;
                i = end;
                Atom::Set(set)
            }
            b => Atom::Byte(b),
        };
        items.push(one(atom));
        i += 1;
    }
    Ok((items, at_start, at_end))
}

/// Whether the last byte of `body` is escaped by an odd run of `\`.
fn escaped_end(body: &[u8]) -> bool {
    let before = &body[..body.len() - 1];
    before.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// Applies `*`, `+` or `?` to an item (repeats combine: `a+?` is `a*`).
fn repeat(item: Option<&mut Item>, q: u8) {
    if let Some(item) = item {
        item.optional |= q != b'+';
        item.many |= q != b'?';
    }
}

/// A bracket expression whose body starts at `start` (after `[`): the set
/// (both cases of a letter with `ignore_case`, before negating) and the
/// index of its closing `]`.
fn bracket(p: &[u8], start: usize, ignore_case: bool) -> Result<(Set, usize), String> {
    let mut i = start;
    let negate = p.get(i) == Some(&b'^');
    i += usize::from(negate);
    let mut set = Set::empty();
    let mut first = true;
    loop {
        let b = *p.get(i).ok_or("unmatched [")?;
        if b == b']' && !first {
            break;
        }
        first = false;
        if b == b'[' && p.get(i + 1) == Some(&b':') {
            i = class(p, i + 2, &mut set)?;
            continue;
        }
        let is_range = p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&c| c != b']');
        if is_range {
            let hi = p[i + 2];
            if hi < b {
                return Err(format!("invalid range {}-{}", b as char, hi as char));
            }
            (b..=hi).for_each(|x| set.add(x));
            i += 3;
        } else {
            set.add(b);
            i += 1;
        }
    }
    if ignore_case {
        set.fold_case();
    }
    if negate {
        set.invert();
    }
    Ok((set, i))
}

/// A `[:name:]` class whose name starts at `start`: adds it to `set`;
/// the index after its `:]`.
fn class(p: &[u8], start: usize, set: &mut Set) -> Result<usize, String> {
    let len = p[start..]
        .windows(2)
        .position(|w| w == b":]")
        .ok_or("unmatched [:")?;
    let name = &p[start..start + len];
    let test: fn(&u8) -> bool = match name {
        b"alpha" => u8::is_ascii_alphabetic,
        b"digit" => u8::is_ascii_digit,
        b"alnum" => u8::is_ascii_alphanumeric,
        b"upper" => u8::is_ascii_uppercase,
        b"lower" => u8::is_ascii_lowercase,
        b"space" => |b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
        b"blank" => |b| matches!(b, b' ' | b'\t'),
        b"punct" => u8::is_ascii_punctuation,
        b"xdigit" => u8::is_ascii_hexdigit,
        _ => {
            return Err(format!(
                "unknown class [:{}:]",
                String::from_utf8_lossy(name)
            ))
        }
    };
    (0..=255u8).filter(test).for_each(|b| set.add(b));
    Ok(start + len + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, line: &str) -> bool {
        Regex::new(pattern.as_bytes(), Options::default())
            .unwrap()
            .is_match(line.as_bytes())
    }

    #[test]
    fn literals_and_dot() {
        assert!(m("ell", "hello"));
        assert!(!m("elo", "hello"));
        assert!(m("h.l", "xhal"));
        assert!(m("", "anything"));
        assert!(m("", ""));
        assert!(!m("a", ""));
    }

    #[test]
    fn repeats() {
        assert!(m("ab*c", "ac") && m("ab*c", "abbbc") && !m("ab*c", "adc"));
        assert!(m("ab+c", "abc") && !m("ab+c", "ac"));
        assert!(m("colou?r", "color") && m("colou?r", "colour") && !m("colou?r", "colouur"));
        assert!(m("a.*z", "a to z") && !m("a.*z", "z to a"));
        assert!(m("x+?y", "y"), "a+? is a*");
        assert!(m("*a", "*a") && !m("*a", "a"), "a leading * is literal");
    }

    #[test]
    fn anchors() {
        assert!(m("^ab", "abc") && !m("^ab", "cab"));
        assert!(m("bc$", "abc") && !m("bc$", "bca"));
        assert!(m("^$", "") && !m("^$", "x"));
        assert!(m("^a*$", "aaa") && !m("^a*$", "aab"));
        assert!(m("a^b", "a^b"), "^ inside is literal");
        assert!(m("a\\$", "a$") && !m("a\\$", "a"));
        assert!(m("a\\\\$", "a\\"), "an escaped backslash then an anchor");
    }

    #[test]
    fn brackets() {
        assert!(m("[abc]x", "bx") && !m("[abc]x", "dx"));
        assert!(m("^[a-z]+$", "hello") && !m("^[a-z]+$", "Hello"));
        assert!(m("[^0-9]", "12a") && !m("^[^0-9]+$", "12a"));
        assert!(m("[]]", "]") && m("[a-]", "-") && m("[^]a]", "b"));
        assert!(m("^[[:digit:]]+$", "2026") && !m("[[:digit:]]", "none"));
        assert!(m("[.]", ".") && !m("[.]", "x"));
    }

    #[test]
    fn escapes_and_options() {
        assert!(m("a\\.b", "a.b") && !m("a\\.b", "axb"));
        assert!(m("1\\+1", "1+1"));
        let icase = Options {
            ignore_case: true,
            ..Options::default()
        };
        let r = Regex::new(b"^he[l]+O", icase).unwrap();
        assert!(r.is_match(b"HELLO") && r.is_match(b"hello"));
        let r = Regex::new(b"[^a]", icase).unwrap();
        assert!(!r.is_match(b"aA"));
        let fixed = Options {
            fixed: true,
            ..Options::default()
        };
        let r = Regex::new(b"a.*[", fixed).unwrap();
        assert!(r.is_match(b"xa.*[y") && !r.is_match(b"abc"));
    }

    #[test]
    fn bad_patterns_say_why() {
        let bad = |p: &str| Regex::new(p.as_bytes(), Options::default()).unwrap_err();
        assert_eq!(bad("[abc"), "unmatched [");
        assert_eq!(bad("ab\\"), "the pattern ends with a lone \\");
        assert!(bad("[z-a]").contains("invalid range"));
        assert!(bad("[[:nope:]]").contains("unknown class"));
        assert_eq!(bad("[[:digit"), "unmatched [:");
    }

    #[test]
    fn hostile_patterns_on_long_lines_stay_linear() {
        // Backtracking takes exponential time on this; here it is one pass.
        let pattern = "a?".repeat(30) + &"a".repeat(30) + "$";
        let line = "a".repeat(30);
        assert!(m(&pattern, &line));
        let long = "a".repeat(1_000_000) + "b";
        assert!(!m("^(a*)*c", &long));
        assert!(m("a*a*a*a*a*b$", &long));
        assert!(!m("a*a*a*a*a*c", &long));
    }
}
