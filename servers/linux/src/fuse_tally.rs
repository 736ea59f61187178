//! FUSE requests the guest's virtio-fs sent, by opcode, and the time the
//! vCPU thread spent answering them (the fs server's calls included): with
//! the VM exits (`vcpu::exit_stats`), what a file operation in Linux costs
//! and where. Logged with the exits when a guest process ends.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use starina_bridge::fuse::protocol::opcode;

/// Counts per FUSE opcode and the nanoseconds spent answering.
#[derive(Clone, Default)]
pub struct FuseTally {
    by_opcode: BTreeMap<u32, u64>,
    requests: u64,
    handled_ns: u64,
}

impl FuseTally {
    /// One request with `opcode` (from its in_header), answered in `ns`.
    pub fn request(&mut self, opcode: u32, ns: u64) {
        *self.by_opcode.entry(opcode).or_insert(0) += 1;
        self.requests += 1;
        self.handled_ns += ns;
    }

    /// What happened after `earlier` (a copy of these counts taken
    /// before).
    pub fn since(&self, earlier: &FuseTally) -> FuseTally {
        let mut by_opcode = BTreeMap::new();
        for (&op, &n) in &self.by_opcode {
            let d = n.saturating_sub(earlier.by_opcode.get(&op).copied().unwrap_or(0));
            if d > 0 {
                by_opcode.insert(op, d);
            }
        }
        FuseTally {
            by_opcode,
            requests: self.requests.saturating_sub(earlier.requests),
            handled_ns: self.handled_ns.saturating_sub(earlier.handled_ns),
        }
    }

    /// `N requests answered in T ns; <opcode name> count ...` (by opcode
    /// number).
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} requests answered in {} ns;",
            self.requests, self.handled_ns
        );
        for (&op, &n) in &self.by_opcode {
            s += &format!(" {} {n}", opcode_name(op));
        }
        s
    }
}

/// The FUSE opcode's name (`op<N>` for ones this list lacks).
fn opcode_name(op: u32) -> String {
    let name = match op {
        opcode::LOOKUP => "lookup",
        opcode::FORGET => "forget",
        opcode::GETATTR => "getattr",
        opcode::SETATTR => "setattr",
        opcode::READLINK => "readlink",
        opcode::SYMLINK => "symlink",
        opcode::MKNOD => "mknod",
        opcode::MKDIR => "mkdir",
        opcode::UNLINK => "unlink",
        opcode::RMDIR => "rmdir",
        opcode::RENAME => "rename",
        opcode::LINK => "link",
        opcode::OPEN => "open",
        opcode::READ => "read",
        opcode::WRITE => "write",
        opcode::STATFS => "statfs",
        opcode::RELEASE => "release",
        opcode::FSYNC => "fsync",
        opcode::FLUSH => "flush",
        opcode::INIT => "init",
        opcode::OPENDIR => "opendir",
        opcode::READDIR => "readdir",
        opcode::RELEASEDIR => "releasedir",
        opcode::CREATE => "create",
        opcode::BATCH_FORGET => "batch_forget",
        opcode::FALLOCATE => "fallocate",
        opcode::READDIRPLUS => "readdirplus",
        opcode::RENAME2 => "rename2",
        _ => return format!("op{op}"),
    };
    String::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_summary() {
        let mut t = FuseTally::default();
        t.request(1, 100);
        let earlier = t.clone();
        t.request(35, 30);
        t.request(1, 20);
        t.request(99, 1);
        assert_eq!(
            t.since(&earlier).summary(),
            "3 requests answered in 51 ns; lookup 1 create 1 op99 1"
        );
        assert_eq!(
            t.summary(),
            "4 requests answered in 151 ns; lookup 2 create 1 op99 1"
        );
    }
}
