//! The instruction counts the QEMU plugin (host/insn-plugin) dumps, named
//! with the kernel's symbols: per function its own instructions (self),
//! the instructions run while it was on the stack (inclusive, once per
//! stack however often it recurs) and how often it was called; and the
//! stacks folded by name for a flame graph.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt::Write;

use crate::profile::Symbols;

/// One line of the dump: instructions run in `block` under `frames`.
#[derive(Debug)]
pub struct BlockCount {
    /// The functions entered by call, outermost first.
    pub frames: Vec<u64>,
    pub block: u64,
    pub insns: u64,
}

/// How the plugin's shadow call stack fared (see host/insn-plugin/src/shadow.rs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    pub calls: u64,
    pub rets: u64,
    pub irets: u64,
    /// Rets that found their frame on another thread's stack.
    pub switches: u64,
    /// Rets that found their frame nowhere (a new stack began).
    pub lost: u64,
    /// Calls and rets whose stack slot QEMU never reported.
    pub missed: u64,
}

/// The plugin's dump, parsed.
#[derive(Debug, Default)]
pub struct RawCounts {
    /// Whether the counts start at the host's `reset` (not at boot).
    pub reset: bool,
    pub stats: StackStats,
    pub blocks: Vec<BlockCount>,
    /// Calls into the last frame of each path.
    pub calls: Vec<(Vec<u64>, u64)>,
}

fn hex(text: &str) -> Result<u64, String> {
    u64::from_str_radix(text, 16).map_err(|_| format!("'{text}' is not a hex address"))
}

fn path(text: &str) -> Result<Vec<u64>, String> {
    match text {
        "-" => Ok(Vec::new()),
        _ => text.split(';').map(hex).collect(),
    }
}

fn number(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("'{text}' is not a count"))
}

fn block_count(frames: &str, block: &str, insns: &str) -> Result<BlockCount, String> {
    Ok(BlockCount {
        frames: path(frames)?,
        block: hex(block)?,
        insns: number(insns)?,
    })
}

fn call_count(frames: &str, calls: &str) -> Result<(Vec<u64>, u64), String> {
    Ok((path(frames)?, number(calls)?))
}

impl RawCounts {
    /// Parses a dump (see `Profile::dump` in host/insn-plugin).
    pub fn parse(text: &str) -> Result<RawCounts, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, "starina-insn-profile 1")) => {}
            _ => return Err("not a starina-insn-profile 1 dump".into()),
        }
        let mut raw = RawCounts::default();
        for (i, line) in lines {
            let words: Vec<&str> = line.split(' ').collect();
            let parsed = match words[..] {
                ["window", w] => {
                    raw.reset = w == "reset";
                    Ok(())
                }
                ["switches", n] => number(n).map(|n| raw.stats.switches = n),
                ["lost", n] => number(n).map(|n| raw.stats.lost = n),
                ["calls", n] => number(n).map(|n| raw.stats.calls = n),
                ["rets", n] => number(n).map(|n| raw.stats.rets = n),
                ["missed", n] => number(n).map(|n| raw.stats.missed = n),
                ["irets", n] => number(n).map(|n| raw.stats.irets = n),
                ["i", frames, block, n] => {
                    block_count(frames, block, n).map(|b| raw.blocks.push(b))
                }
                ["c", frames, n] => call_count(frames, n).map(|c| raw.calls.push(c)),
                _ => Err("unknown line".to_string()),
            };
            parsed.map_err(|e| format!("line {}: {e}: '{line}'", i + 1))?;
        }
        Ok(raw)
    }
}

/// One function's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub own: u64,
    pub inclusive: u64,
    pub calls: u64,
}

/// The counts by function, and the stacks by name.
#[derive(Debug, Default)]
pub struct Report {
    pub total: u64,
    pub stats: StackStats,
    /// Sorted by self, then inclusive, then name.
    pub functions: Vec<Function>,
    /// `caller;callee` (outermost first) to instructions.
    pub folded: BTreeMap<String, u64>,
}

/// A name usable in a folded stack (`;` separates frames there).
fn frame_name(symbols: &Symbols, addr: u64) -> String {
    symbols.label(addr).replace(';', ",")
}

impl Report {
    pub fn new(raw: &RawCounts, symbols: &Symbols) -> Report {
        let mut names: HashMap<u64, String> = HashMap::new();
        let mut name = |addr: u64| -> String {
            (names
                .entry(addr)
                .or_insert_with(|| frame_name(symbols, addr)))
            .clone()
        };
        let mut by_name: HashMap<String, Function> = HashMap::new();
        let mut report = Report {
            stats: raw.stats.clone(),
            ..Report::default()
        };
        for b in &raw.blocks {
            let mut stack: Vec<String> = b.frames.iter().map(|&a| name(a)).collect();
            let leaf = name(b.block);
            if stack.last() != Some(&leaf) {
                stack.push(leaf.clone());
            }
            report.total += b.insns;
            *report.folded.entry(stack.join(";")).or_default() += b.insns;
            (by_name.entry(leaf.clone()).or_default()).own += b.insns;
            stack.sort_unstable();
            stack.dedup();
            for f in stack {
                by_name.entry(f).or_default().inclusive += b.insns;
            }
        }
        for (frames, calls) in &raw.calls {
            if let Some(&callee) = frames.last() {
                by_name.entry(name(callee)).or_default().calls += calls;
            }
        }
        report.functions = by_name
            .into_iter()
            .map(|(name, f)| Function { name, ..f })
            .collect();
        (report.functions)
            .sort_by(|a, b| (b.own, b.inclusive, &a.name).cmp(&(a.own, a.inclusive, &b.name)));
        report
    }

    fn pct(&self, n: u64) -> f64 {
        100.0 * n as f64 / self.total.max(1) as f64
    }

    fn rows<'a>(&self, out: &mut String, rows: impl Iterator<Item = &'a Function>) {
        out.push_str("          self  self%      inclusive  incl%        calls  function\n");
        for f in rows {
            let _ = writeln!(
                out,
                "{:>14} {:6.2} {:>14} {:6.2} {:>12}  {}",
                f.own,
                self.pct(f.own),
                f.inclusive,
                self.pct(f.inclusive),
                f.calls,
                f.name
            );
        }
    }

    /// The table: a summary line, then the `top` functions (all if
    /// `None`) by self and by inclusive instructions.
    pub fn table(&self, title: &str, top: Option<usize>) -> String {
        let top = top.unwrap_or(self.functions.len());
        let s = &self.stats;
        let mut out = format!(
            "{title}: {} instructions\n\
             (shadow call stack: {} calls, {} rets, {} iretq; {} rets onto another thread's stack, \
             {} onto a new stack, {} calls or rets unseen)\n\n\
             by self (instructions in the function itself):\n",
            self.total, s.calls, s.rets, s.irets, s.switches, s.lost, s.missed
        );
        self.rows(&mut out, self.functions.iter().take(top));
        out.push_str("\nby inclusive (instructions while the function was on the stack):\n");
        let mut by_inclusive: Vec<&Function> = self.functions.iter().collect();
        by_inclusive.sort_by(|a, b| (b.inclusive, &a.name).cmp(&(a.inclusive, &b.name)));
        self.rows(&mut out, by_inclusive.into_iter().take(top));
        out
    }

    /// The folded stacks, one `frames count` line each.
    pub fn folded_text(&self) -> String {
        let mut out = String::new();
        for (stack, n) in &self.folded {
            let _ = writeln!(out, "{stack} {n}");
        }
        out
    }

    /// The folded stacks as frame lists, for the flame graph.
    pub fn stacks(&self) -> Vec<(Vec<&str>, u64)> {
        (self.folded.iter())
            .map(|(stack, &n)| (stack.split(';').collect(), n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NM: &str = "\
ffffffff80000000 T main
ffffffff80001000 t send
ffffffff80002000 T <[u8; 4] as Foo>::copy
";

    const DUMP: &str = "\
starina-insn-profile 1
window reset
switches 2
lost 1
calls 5
rets 4
missed 0
irets 3
i - ffffffff80000010 10
i ffffffff80001000 ffffffff80001000 20
i ffffffff80001000;ffffffff80001000 ffffffff80001040 5
i ffffffff80001000 ffffffff80002000 7
i - 1000 3
c ffffffff80001000 4
c ffffffff80001000;ffffffff80001000 1
";

    fn report() -> Report {
        let raw = RawCounts::parse(DUMP).unwrap();
        Report::new(&raw, &Symbols::parse(NM))
    }

    #[test]
    fn self_inclusive_and_calls_per_function() {
        let r = report();
        assert_eq!(r.total, 45);
        let stats = StackStats {
            calls: 5,
            rets: 4,
            irets: 3,
            switches: 2,
            lost: 1,
            missed: 0,
        };
        assert_eq!(r.stats, stats);
        let f = |name: &str| r.functions.iter().find(|f| f.name == name).unwrap().clone();
        // send: 20 + 5 itself; 32 on the stack (recursion counted once).
        assert_eq!(
            f("send"),
            Function {
                name: "send".into(),
                own: 25,
                inclusive: 32,
                calls: 5
            }
        );
        // A block reached by a jump counts as its own function's self.
        assert_eq!(f("<[u8, 4] as Foo>::copy").own, 7);
        assert_eq!(f("main").own, 10);
        assert_eq!(f("? (page 0x1000)").own, 3);
        assert_eq!(r.functions[0].name, "send");
    }

    #[test]
    fn stacks_fold_by_name_without_repeating_the_leaf() {
        let r = report();
        let text = r.folded_text();
        for line in [
            "main 10",
            "send 20",
            "send;send 5",
            "send;<[u8, 4] as Foo>::copy 7",
            "? (page 0x1000) 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no '{line}' in\n{text}");
        }
        assert_eq!(r.stacks().iter().map(|s| s.1).sum::<u64>(), 45);
    }

    #[test]
    fn the_table_ranks_by_self_and_by_inclusive() {
        let table = report().table("bench", Some(2));
        assert!(table.starts_with("bench: 45 instructions\n"), "{table}");
        let rows: Vec<&str> = table.lines().filter(|l| l.ends_with("send")).collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert_eq!(
            rows[0].split_whitespace().collect::<Vec<_>>(),
            ["25", "55.56", "32", "71.11", "5", "send"]
        );
        assert!(!table.contains("page"), "top 2 only: {table}");
    }

    #[test]
    fn bad_dumps_are_refused_with_the_line() {
        assert!(RawCounts::parse("hello").is_err());
        let e = RawCounts::parse("starina-insn-profile 1\ni - zz 3\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("'zz'"), "{e}");
        let e = RawCounts::parse("starina-insn-profile 1\nwhat\n").unwrap_err();
        assert!(e.contains("unknown line"), "{e}");
    }
}
