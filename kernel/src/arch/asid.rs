//! Address space IDs for guests. The CPU tags each guest TLB entry with
//! the ASID of the vCPU that made it, so every vCPU gets its own: two VMs
//! that shared one could read each other's stale translations. ASID 0 is
//! the host's. When the CPU has fewer ASIDs than there are vCPUs, the rest
//! share ASID 1, which no one owns alone, and whoever runs with it flushes
//! the TLB on every entry: slower, never wrong.

use crate::sync::SpinLock;

/// The ASID shared by vCPUs that found none free.
const SHARED: u32 = 1;
/// ASIDs this pool hands out: 2.. up to the CPU's count, at most 63.
const POOL_MAX: u32 = 64;

/// One vCPU's ASID; it returns to the pool when dropped.
#[derive(Debug)]
pub struct Asid {
    id: u32,
}

impl Asid {
    /// A free ASID below `cpu_asids` (CPUID 0x8000000A EBX), or the shared
    /// one.
    pub fn alloc(cpu_asids: u32) -> Asid {
        Asid {
            id: POOL.lock().alloc(cpu_asids).unwrap_or(SHARED),
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether other vCPUs use this ASID too: then every entry must flush.
    pub fn is_shared(&self) -> bool {
        self.id == SHARED
    }
}

impl Drop for Asid {
    fn drop(&mut self) {
        if !self.is_shared() {
            POOL.lock().free(self.id);
        }
    }
}

/// Bit `n` set: ASID `n` is in use.
struct Pool(u64);

impl Pool {
    fn alloc(&mut self, cpu_asids: u32) -> Option<u32> {
        let limit = cpu_asids.min(POOL_MAX);
        let id = (SHARED + 1..limit).find(|&n| self.0 & (1 << n) == 0)?;
        self.0 |= 1 << id;
        Some(id)
    }

    fn free(&mut self, id: u32) {
        self.0 &= !(1 << id);
    }
}

static POOL: SpinLock<Pool> = SpinLock::new(Pool(0));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gets_its_own_until_none_is_left_then_they_share() {
        let mut pool = Pool(0);
        // 16 ASIDs (QEMU's TCG): 0 is the host's, 1 the shared one.
        let ids: alloc::vec::Vec<u32> = (0..14).map(|_| pool.alloc(16).unwrap()).collect();
        assert_eq!(ids, (2..16).collect::<alloc::vec::Vec<u32>>());
        assert_eq!(pool.alloc(16), None);
        pool.free(7);
        assert_eq!(pool.alloc(16), Some(7));
    }

    #[test]
    fn a_cpu_with_many_asids_is_capped_at_the_pool() {
        let mut pool = Pool(0);
        let n = (0..100).filter_map(|_| pool.alloc(65536)).count();
        assert_eq!(n as u32, POOL_MAX - 2);
    }

    #[test]
    fn the_shared_asid_flushes_and_is_not_returned() {
        let asid = Asid { id: SHARED };
        assert!(asid.is_shared());
        drop(asid);
        assert_eq!(POOL.lock().0 & (1 << SHARED), 0);
    }
}
