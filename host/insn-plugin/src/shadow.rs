//! Instruction counts by call stack. Each vCPU keeps shadow call stacks
//! driven by the guest's `call` and `ret`: a call pushes a frame naming
//! the callee (the next block's address) and the stack slot the return
//! address went to; a ret pops back to the frame whose slot it reads.
//!
//! A ret whose slot is on no frame of the current stack switched threads
//! (the kernel's `switch_stack` returns on another thread's stack): the
//! stack that holds that slot becomes current, as it was when that thread
//! left it. A slot found nowhere (a thread's first run, a frame pushed
//! before the profile began) starts a new, empty stack.
//!
//! An `iretq` (the end of an interrupt, or the kernel starting a thread
//! from a saved frame) starts a new stack too: the code after it counts at
//! the root until one of its rets finds its frame on a known stack.
//!
//! Approximate: an interrupt's handler is counted under the interrupted
//! function; code after an `iretq` counts at the root until its function
//! returns; a stack slot reused by a new thread may match a dead one's.
//! Instruction counts themselves are exact: every executed block adds its
//! instruction count (a block that faults part-way counts whole).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::hash::Hasher;
use std::io::Write;

/// Frames kept per stack; deeper calls count under the deepest frame.
const MAX_DEPTH: usize = 256;
/// Stacks kept per vCPU (threads seen); the least recently used goes.
const MAX_STACKS: usize = 256;

/// A multiply-shift hash for integer keys (std's SipHash is slow here).
#[derive(Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// A node of the call tree: a function entered from its parent's frame.
struct Node {
    parent: u32,
    entry: u64,
    calls: u64,
}

#[derive(Clone, Copy)]
struct Frame {
    /// Where the call stored its return address.
    slot: u64,
    node: u32,
}

#[derive(Default)]
struct Stack {
    frames: Vec<Frame>,
    last_used: u64,
}

/// A control transfer whose stack slot is awaited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    Call,
    Ret,
}

#[derive(Default)]
struct Cpu {
    stacks: Vec<Stack>,
    current: usize,
    /// A call's slot, until the callee's first block runs.
    pending_call: Option<u64>,
    /// A call or ret is executing: its stack access is the next one seen.
    armed: Option<Transfer>,
    clock: u64,
}

/// Counts since the last reset, and the call tree they hang on.
pub struct Profile {
    /// Node 0 is the root: no frame.
    nodes: Vec<Node>,
    children: IntMap<(u32, u64), u32>,
    /// Instructions per (frame node, block address).
    counts: IntMap<(u32, u64), u64>,
    cpus: Vec<Cpu>,
    /// Rets that found their frame on another thread's stack.
    pub switches: u64,
    /// Rets that found their frame nowhere (a new stack began).
    pub lost: u64,
    /// Calls and rets seen.
    pub calls: u64,
    pub rets: u64,
    /// Calls and rets whose stack access was never reported.
    pub missed: u64,
    pub irets: u64,
    /// Whether `reset` ran (the counts cover a chosen window).
    pub was_reset: bool,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile {
            nodes: vec![Node {
                parent: 0,
                entry: 0,
                calls: 0,
            }],
            children: IntMap::default(),
            counts: IntMap::default(),
            cpus: Vec::new(),
            switches: 0,
            lost: 0,
            calls: 0,
            rets: 0,
            missed: 0,
            irets: 0,
            was_reset: false,
        }
    }
}

impl Cpu {
    fn stack(&mut self) -> &mut Stack {
        if self.stacks.is_empty() {
            self.stacks.push(Stack::default());
            self.current = 0;
        }
        &mut self.stacks[self.current]
    }

    fn top_node(&mut self) -> u32 {
        self.stack().frames.last().map_or(0, |f| f.node)
    }

    /// Makes stack `i` current, popping it to just below `slot`'s frame.
    fn resume(&mut self, i: usize, slot: u64) -> bool {
        let frames = &mut self.stacks[i].frames;
        match frames.iter().rposition(|f| f.slot == slot) {
            Some(at) => {
                frames.truncate(at);
                self.current = i;
                true
            }
            None => false,
        }
    }

    /// A new empty stack (an empty one reused, else the least recently
    /// used replaced when there are MAX_STACKS).
    fn start_stack(&mut self) {
        let fresh = Stack {
            frames: Vec::new(),
            last_used: self.clock,
        };
        if let Some(empty) = self.stacks.iter().position(|s| s.frames.is_empty()) {
            self.stacks[empty] = fresh;
            self.current = empty;
        } else if self.stacks.len() < MAX_STACKS {
            self.stacks.push(fresh);
            self.current = self.stacks.len() - 1;
        } else {
            let (oldest, _) = (self.stacks.iter().enumerate())
                .min_by_key(|(_, s)| s.last_used)
                .expect("MAX_STACKS > 0");
            self.stacks[oldest] = fresh;
            self.current = oldest;
        }
    }
}

impl Profile {
    fn cpu(&mut self, vcpu: usize) -> &mut Cpu {
        if self.cpus.len() <= vcpu {
            self.cpus.resize_with(vcpu + 1, Cpu::default);
        }
        &mut self.cpus[vcpu]
    }

    fn child(&mut self, parent: u32, entry: u64) -> u32 {
        let next = self.nodes.len() as u32;
        let id = *self.children.entry((parent, entry)).or_insert(next);
        if id == next {
            self.nodes.push(Node {
                parent,
                entry,
                calls: 0,
            });
        }
        id
    }

    /// A block of `insns` instructions at `addr` runs on `vcpu`.
    pub fn block(&mut self, vcpu: usize, addr: u64, insns: u64) {
        let cpu = self.cpu(vcpu);
        cpu.clock += 1;
        let missed = cpu.armed.take().is_some();
        let pending = cpu.pending_call.take();
        let mut node = cpu.top_node();
        self.missed += missed as u64;
        if let Some(slot) = pending {
            let deep = self.cpu(vcpu).stack().frames.len() >= MAX_DEPTH;
            if !deep {
                node = self.child(node, addr);
            }
            self.nodes[node as usize].calls += 1;
            self.cpu(vcpu).stack().frames.push(Frame { slot, node });
        }
        *self.counts.entry((node, addr)).or_default() += insns;
    }

    /// A call or ret starts on `vcpu`: the next stack access is its own.
    pub fn arm(&mut self, vcpu: usize, transfer: Transfer) {
        self.cpu(vcpu).armed = Some(transfer);
    }

    /// A memory access by a call or ret on `vcpu`. Only the first access
    /// after `arm` counts: a store for a call, a load for a ret. (QEMU
    /// 7.2 also reports later accesses of other instructions to a
    /// callback registered on a block's last instruction.)
    pub fn access(&mut self, vcpu: usize, transfer: Transfer, store: bool, vaddr: u64) {
        let cpu = self.cpu(vcpu);
        if cpu.armed != Some(transfer) || store != (transfer == Transfer::Call) {
            return;
        }
        cpu.armed = None;
        match transfer {
            Transfer::Call => self.call(vcpu, vaddr),
            Transfer::Ret => self.ret(vcpu, vaddr),
        }
    }

    /// A call on `vcpu` stored its return address at `slot`.
    pub fn call(&mut self, vcpu: usize, slot: u64) {
        self.calls += 1;
        self.cpu(vcpu).pending_call = Some(slot);
    }

    /// A ret on `vcpu` loaded its return address from `slot`.
    pub fn ret(&mut self, vcpu: usize, slot: u64) {
        self.rets += 1;
        let cpu = self.cpu(vcpu);
        let current = cpu.current;
        if !cpu.stacks.is_empty() && cpu.resume(current, slot) {
            return;
        }
        let mut others: Vec<usize> = (0..cpu.stacks.len()).filter(|&i| i != current).collect();
        others.sort_by_key(|&i| std::cmp::Reverse(cpu.stacks[i].last_used));
        if !cpu.stacks.is_empty() {
            cpu.stacks[current].last_used = cpu.clock;
        }
        if others.into_iter().any(|i| cpu.resume(i, slot)) {
            self.switches += 1;
        } else {
            cpu.start_stack();
            self.lost += 1;
        }
    }

    /// An `iretq` on `vcpu`: it returns to an interrupted thread, this one
    /// or another, whose frames are not known from the slot. The code
    /// after it counts on a new, empty stack until a ret finds its frame.
    pub fn iret(&mut self, vcpu: usize) {
        self.irets += 1;
        let cpu = self.cpu(vcpu);
        let current = cpu.current;
        if let Some(stack) = cpu.stacks.get_mut(current) {
            stack.last_used = cpu.clock;
        }
        cpu.start_stack();
    }

    /// Zeroes the counts; the stacks carry on.
    pub fn reset(&mut self) {
        self.counts.clear();
        for node in &mut self.nodes {
            node.calls = 0;
        }
        self.switches = 0;
        self.lost = 0;
        self.calls = 0;
        self.rets = 0;
        self.missed = 0;
        self.irets = 0;
        self.was_reset = true;
    }

    /// The function entries from the root to `node`, `;`-separated hex
    /// (`-` for the root).
    fn path(&self, mut node: u32) -> String {
        let mut entries = Vec::new();
        while node != 0 {
            entries.push(format!("{:x}", self.nodes[node as usize].entry));
            node = self.nodes[node as usize].parent;
        }
        if entries.is_empty() {
            return "-".to_string();
        }
        entries.reverse();
        entries.join(";")
    }

    /// Writes the counts: a header, then `i <path> <block> <instructions>`
    /// per block and stack, and `c <path> <calls>` per call-tree node
    /// entered (addresses in hex).
    pub fn dump(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "starina-insn-profile 1")?;
        writeln!(
            out,
            "window {}",
            if self.was_reset { "reset" } else { "boot" }
        )?;
        writeln!(out, "switches {}", self.switches)?;
        writeln!(out, "lost {}", self.lost)?;
        writeln!(out, "calls {}", self.calls)?;
        writeln!(out, "rets {}", self.rets)?;
        writeln!(out, "missed {}", self.missed)?;
        writeln!(out, "irets {}", self.irets)?;
        let mut paths: IntMap<u32, String> = IntMap::default();
        let mut counts: Vec<(&(u32, u64), &u64)> = self.counts.iter().collect();
        counts.sort_unstable();
        for (&(node, block), &insns) in counts {
            let path = paths.entry(node).or_insert_with(|| self.path(node));
            writeln!(out, "i {path} {block:x} {insns}")?;
        }
        for (id, node) in self.nodes.iter().enumerate().skip(1) {
            if node.calls > 0 {
                writeln!(out, "c {} {}", self.path(id as u32), node.calls)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(p: &Profile) -> String {
        let mut out = Vec::new();
        p.dump(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn calls_and_rets_nest_the_counts() {
        let mut p = Profile::default();
        p.block(0, 0x100, 3); // main
        p.call(0, 0x7ff8);
        p.block(0, 0x200, 5); // f
        p.call(0, 0x7ff0);
        p.block(0, 0x300, 2); // g
        p.ret(0, 0x7ff0);
        p.block(0, 0x208, 1); // back in f
        p.ret(0, 0x7ff8);
        p.block(0, 0x108, 4); // back at the root
        let text = dump(&p);
        for line in [
            "window boot",
            "i - 100 3",
            "i - 108 4",
            "i 200 200 5",
            "i 200 208 1",
            "i 200;300 300 2",
            "c 200 1",
            "c 200;300 1",
            "lost 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no '{line}' in\n{text}");
        }
    }

    #[test]
    fn a_ret_on_another_stack_resumes_that_thread() {
        let mut p = Profile::default();
        // Thread A calls switch (0x900) on its stack at 0xa000.
        p.block(0, 0x100, 1);
        p.call(0, 0xa000);
        p.block(0, 0x900, 1);
        // It returns on a stack never seen: thread B's first run.
        p.ret(0, 0xb000);
        assert_eq!(p.lost, 1);
        p.block(0, 0x500, 1); // B's entry, at B's root
        p.call(0, 0xaff0 - 0x1000); // B calls switch on its own stack
        p.block(0, 0x900, 1);
        p.ret(0, 0xa000); // back to A, just after its call
        assert_eq!(p.switches, 1);
        p.block(0, 0x104, 7);
        let text = dump(&p);
        assert!(text.lines().any(|l| l == "i - 104 7"), "{text}");
        assert!(text.lines().any(|l| l == "i - 500 1"), "{text}");
        assert!(text.lines().any(|l| l == "i 900 900 2"), "{text}");
        assert!(text.lines().any(|l| l == "c 900 2"), "{text}");
    }

    #[test]
    fn reset_keeps_the_stacks_and_zeroes_the_counts() {
        let mut p = Profile::default();
        p.block(0, 0x100, 1);
        p.call(0, 0x7ff8);
        p.block(0, 0x200, 9);
        p.reset();
        p.block(0, 0x210, 2);
        p.ret(0, 0x7ff8);
        p.block(0, 0x108, 1);
        let text = dump(&p);
        assert!(text.lines().any(|l| l == "window reset"), "{text}");
        assert!(text.lines().any(|l| l == "i 200 210 2"), "{text}");
        assert!(text.lines().any(|l| l == "i - 108 1"), "{text}");
        assert!(!text.contains(" 9\n"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("c ")), "{text}");
    }

    #[test]
    fn only_the_armed_access_of_the_right_kind_counts() {
        let mut p = Profile::default();
        p.block(0, 0x100, 2);
        p.access(0, Transfer::Call, true, 0x1234); // not armed: ignored
        p.arm(0, Transfer::Call);
        p.access(0, Transfer::Call, false, 0x5000); // a load: not the push
        p.access(0, Transfer::Call, true, 0x7ff8);
        p.access(0, Transfer::Call, true, 0x9999); // a later access: ignored
        p.block(0, 0x200, 3);
        p.arm(0, Transfer::Ret);
        p.access(0, Transfer::Ret, false, 0x7ff8);
        p.block(0, 0x108, 1);
        p.arm(0, Transfer::Ret); // its access never comes
        p.block(0, 0x300, 1);
        assert_eq!((p.calls, p.rets, p.lost, p.missed), (1, 1, 0, 1));
        let text = dump(&p);
        assert!(text.lines().any(|l| l == "i 200 200 3"), "{text}");
        assert!(text.lines().any(|l| l == "i - 108 1"), "{text}");
    }

    #[test]
    fn after_an_iret_code_counts_at_the_root_until_a_ret_finds_its_frame() {
        let mut p = Profile::default();
        p.block(0, 0x100, 1);
        p.call(0, 0x7ff8);
        p.block(0, 0x200, 1); // f, interrupted here
        p.iret(0);
        p.block(0, 0x210, 4); // the rest of f: its frame is not known yet
        p.ret(0, 0x7ff8); // f returns: its frame is found again
        p.block(0, 0x108, 2);
        assert_eq!((p.irets, p.switches, p.lost), (1, 1, 0));
        let text = dump(&p);
        assert!(text.lines().any(|l| l == "i - 210 4"), "{text}");
        assert!(text.lines().any(|l| l == "i - 108 2"), "{text}");
        // The empty stack the iret began is reused by the next one.
        p.iret(0);
        assert_eq!(p.cpus[0].stacks.len(), 2);
    }

    #[test]
    fn deep_recursion_stops_growing_the_tree() {
        let mut p = Profile::default();
        for i in 0..(MAX_DEPTH as u64 + 10) {
            p.call(0, 0x10_0000 - 8 * i);
            p.block(0, 0x400, 1);
        }
        assert_eq!(p.nodes.len(), MAX_DEPTH + 1);
        for i in (0..(MAX_DEPTH as u64 + 10)).rev() {
            p.ret(0, 0x10_0000 - 8 * i);
        }
        assert_eq!(p.lost, 0);
        assert!(p.cpus[0].stacks[0].frames.is_empty());
    }
}
