//! The editor's history: a bounded list of entered lines and where up/down
//! browsing is in it. The line being edited when browsing starts is kept
//! and comes back after the newest entry.

use alloc::collections::VecDeque;
use alloc::string::String;

/// How many lines the history keeps; the oldest go first.
pub const MAX_HISTORY: usize = 100;

#[derive(Debug, Default)]
pub(crate) struct History {
    entries: VecDeque<String>,
    /// The entry shown while browsing.
    browsing: Option<usize>,
    /// The line being edited when browsing started.
    saved: String,
}

impl History {
    /// Adds an entered line (not blank ones, not a repeat of the last) and
    /// ends browsing.
    pub(crate) fn push(&mut self, line: &str) {
        self.reset();
        if line.trim().is_empty() || self.entries.back().is_some_and(|last| last == line) {
            return;
        }
        if self.entries.len() == MAX_HISTORY {
            self.entries.pop_front();
        }
        self.entries.push_back(String::from(line));
    }

    /// Ends browsing without adding anything.
    pub(crate) fn reset(&mut self) {
        self.browsing = None;
        self.saved.clear();
    }

    /// The entry before the one shown (`current` is the line on screen,
    /// saved if browsing starts now), or `None` at the oldest.
    pub(crate) fn up(&mut self, current: &str) -> Option<&str> {
        let index = match self.browsing {
            None if self.entries.is_empty() => return None,
            None => {
                self.saved = String::from(current);
                self.entries.len() - 1
            }
            Some(0) => return None,
            Some(index) => index - 1,
        };
        self.browsing = Some(index);
        Some(&self.entries[index])
    }

    /// The entry after the one shown, the saved line after the newest, or
    /// `None` when not browsing.
    pub(crate) fn down(&mut self) -> Option<String> {
        let index = self.browsing?;
        if index + 1 == self.entries.len() {
            self.browsing = None;
            return Some(core::mem::take(&mut self.saved));
        }
        self.browsing = Some(index + 1);
        Some(self.entries[index + 1].clone())
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn all(h: &History) -> Vec<&str> {
        h.entries().collect()
    }

    #[test]
    fn skips_blank_lines_and_consecutive_duplicates() {
        let mut h = History::default();
        for line in ["a", "a", " ", "", "b", "a"] {
            h.push(line);
        }
        assert_eq!(all(&h), ["a", "b", "a"]);
    }

    #[test]
    fn is_bounded() {
        let mut h = History::default();
        for i in 0..250 {
            h.push(&alloc::format!("cmd {i}"));
        }
        assert_eq!(h.entries().count(), MAX_HISTORY);
        assert_eq!(h.entries().next(), Some("cmd 150"));
        assert_eq!(h.entries().last(), Some("cmd 249"));
    }

    #[test]
    fn browsing_keeps_the_edited_line() {
        let mut h = History::default();
        h.push("one");
        h.push("two");
        assert_eq!(h.up("draft"), Some("two"));
        assert_eq!(h.up("two"), Some("one"));
        assert_eq!(h.up("one"), None);
        assert_eq!(h.down().as_deref(), Some("two"));
        assert_eq!(h.down().as_deref(), Some("draft"));
        assert_eq!(h.down(), None);
    }

    #[test]
    fn empty_history_has_nothing_to_browse() {
        let mut h = History::default();
        assert_eq!(h.up("x"), None);
        assert_eq!(h.down(), None);
    }
}
