//! Hypervisor objects: guest RAM (host pages plus the nested page tables
//! that map them for the guest) and vCPUs.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use starina::abi::vcpu::run_deadline;
use starina::abi::Error;

use crate::arch::hypervisor::HwVcpu;
use crate::arch::hypervisor::Unavailable;
use crate::mm::page;
use crate::mm::phys_to_virt;

/// The most vCPUs one guest RAM gets (the VMM's limit too).
pub const MAX_VCPUS: usize = 8;
/// Guest RAM is allocated and mapped in 2 MiB chunks.
pub const CHUNK: u64 = 2 << 20;
/// Guest RAM ends below the VMM's MMIO window (0xd000_0000).
pub const MAX_GUEST_RAM: u64 = 0xd000_0000;

pub struct GuestRam {
    size: u64,
    /// Host physical address of each 2 MiB chunk, in guest order.
    chunks: Vec<u64>,
    /// The nested page table (NPT or EPT, as the backend reads them).
    npt_root: u64,
    /// Every page-table page, freed with the object.
    tables: Vec<u64>,
    /// The RAM, charged to the VMM's memory account.
    _charge: crate::account::Charge,
    /// vCPUs created on it so far: the next one's CPU ([`vcpu_cpu`]).
    vcpus_created: AtomicUsize,
}

fn table(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: `phys` is a page-table page this GuestRam allocated and owns;
    // it is only written while the GuestRam is being built (`new`), before
    // any vCPU can use it.
    unsafe { &mut *(phys_to_virt(phys) as *mut [u64; 512]) }
}

impl GuestRam {
    /// `size` bytes of zeroed guest RAM, charged to memory `account`.
    pub fn new(size: u64, account: u8) -> Result<Arc<GuestRam>, Error> {
        if size == 0 || !size.is_multiple_of(CHUNK) || size > MAX_GUEST_RAM {
            return Err(Error::InvalidArgument);
        }
        let charge = crate::account::Charge::try_new(account, size as usize)?;
        let mut ram = GuestRam {
            _charge: charge,
            size,
            chunks: Vec::new(),
            npt_root: 0,
            tables: Vec::new(),
            vcpus_created: AtomicUsize::new(0),
        };
        let n = (size / CHUNK) as usize;
        ram.chunks.try_reserve_exact(n).map_err(|_| Error::OutOfMemory)?;
        for _ in 0..n {
            // Dropping `ram` on error frees what was allocated so far.
            let phys = page::alloc_guest_pages((CHUNK / 4096) as usize, (CHUNK / 4096) as usize)
                .ok_or(Error::OutOfMemory)?;
            ram.chunks.push(phys);
        }
        let alloc_table = |tables: &mut Vec<u64>| -> Result<u64, Error> {
            let p = page::alloc_zeroed_pages(1).ok_or(Error::OutOfMemory)?;
            tables.try_reserve(1).map_err(|_| {
                page::free_pages(p, 1);
                Error::OutOfMemory
            })?;
            tables.push(p);
            Ok(p)
        };
        let (table_flags, leaf_flags) = crate::arch::hypervisor::nested_paging_flags();
        ram.npt_root = alloc_table(&mut ram.tables)?;
        for (i, &host) in ram.chunks.clone().iter().enumerate() {
            let gpa = i as u64 * CHUNK;
            let pml4 = table(ram.npt_root);
            let i4 = ((gpa >> 39) & 0x1ff) as usize;
            if pml4[i4] == 0 {
                pml4[i4] = alloc_table(&mut ram.tables)? | table_flags;
            }
            let pdpt = table(pml4[i4] & !0xfff);
            let i3 = ((gpa >> 30) & 0x1ff) as usize;
            if pdpt[i3] == 0 {
                pdpt[i3] = alloc_table(&mut ram.tables)? | table_flags;
            }
            let pd = table(pdpt[i3] & !0xfff);
            pd[((gpa >> 21) & 0x1ff) as usize] = host | leaf_flags;
        }
        Ok(Arc::new(ram))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn npt_root(&self) -> u64 {
        self.npt_root
    }

    /// The CPU the next vCPU on this RAM runs on ([`vcpu_cpu`]);
    /// `AlreadyExists` once it had [`MAX_VCPUS`] (a guest with more CPUs
    /// than a VMM offers would only cost memory).
    pub fn next_vcpu_cpu(&self) -> Result<usize, Error> {
        let n = self.vcpus_created.fetch_add(1, Ordering::Relaxed);
        if n >= MAX_VCPUS {
            self.vcpus_created.store(MAX_VCPUS, Ordering::Relaxed);
            return Err(Error::AlreadyExists);
        }
        Ok(vcpu_cpu(n))
    }

    /// Calls `f` with each (host virtual address, length) piece of
    /// `[gpa, gpa + len)`, after checking it lies in guest RAM.
    fn for_each_piece(&self, gpa: u64, len: usize, mut f: impl FnMut(usize, usize, usize)) -> Result<(), Error> {
        let end = gpa.checked_add(len as u64).ok_or(Error::OutsideGuestRam)?;
        if end > self.size {
            return Err(Error::OutsideGuestRam);
        }
        let mut done = 0usize;
        while done < len {
            let at = gpa + done as u64;
            let chunk = self.chunks[(at / CHUNK) as usize];
            let off = at % CHUNK;
            let n = ((CHUNK - off) as usize).min(len - done);
            f(phys_to_virt(chunk + off), done, n);
            done += n;
        }
        Ok(())
    }

    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Error> {
        let len = buf.len();
        self.for_each_piece(gpa, len, |host, done, n| {
            // SAFETY: `host..host+n` is inside a chunk this object owns (checked
            // by `for_each_piece`); the guest may write it concurrently, which
            // only makes the bytes read arbitrary, never unsound for `u8`.
            unsafe { core::ptr::copy_nonoverlapping(host as *const u8, buf[done..].as_mut_ptr(), n) }
        })
    }

    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        self.for_each_piece(gpa, data.len(), |host, done, n| {
            // SAFETY: as for `read`; guest RAM is plain bytes.
            unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), host as *mut u8, n) }
        })
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        for &c in &self.chunks {
            page::free_pages(c, (CHUNK / 4096) as usize);
        }
        for &t in &self.tables {
            page::free_pages(t, 1);
        }
    }
}

/// The CPU that the `n`-th vCPU of a VM runs on: the online CPUs in
/// turn. Its thread is pinned there for good: under SVM the CPU turned SVM
/// on when the vCPU was made, under VMX the vCPU's VMCS is active there
/// (and its host state is that CPU's) and never migrates.
pub fn vcpu_cpu(n: usize) -> usize {
    let online: Vec<usize> = crate::percpu::all()
        .enumerate()
        .filter(|(_, c)| c.is_online())
        .map(|(i, _)| i)
        .collect();
    // From the last CPU down: device interrupts go to the boot CPU, so a
    // guest on fewer vCPUs than there are CPUs runs where they do not
    // stop it, beside the threads they wake (the network's among them).
    let from_last = online.len().saturating_sub(1 + n % online.len().max(1));
    online.get(from_last).copied().unwrap_or(0)
}

/// A vCPU. One thread runs it at a time (`run` refuses a second: `Busy`),
/// on the vCPU's own CPU (it is pinned there on its first call).
pub struct Vcpu {
    /// The CPU it runs on, for good ([`vcpu_cpu`]).
    cpu: usize,
    /// Another thread asked it out of guest mode ([`Vcpu::kick`]): its
    /// next entry exits at once (after delivering what it injects).
    kick: AtomicBool,
    /// Keeps the guest's memory (and its nested page tables) alive while
    /// the vCPU can run.
    ram: Arc<GuestRam>,
    running: AtomicBool,
    /// When the VMM needs control back ([`VcpuControl::ExitBy`]);
    /// `NO_EXIT_BY` until it says.
    ///
    /// [`VcpuControl::ExitBy`]: starina::abi::vcpu::VcpuControl::ExitBy
    exit_by: AtomicU64,
    hw: UnsafeCell<HwVcpu>,
}

/// The VMM has not said when it needs control back.
const NO_EXIT_BY: u64 = 0;

// SAFETY: `hw` is only accessed by the thread that won `running`.
unsafe impl Sync for Vcpu {}
// SAFETY: as above.
unsafe impl Send for Vcpu {}

/// Exclusive access to a vCPU's hardware state while one thread uses it.
pub struct VcpuGuard<'a> {
    vcpu: &'a Vcpu,
}

impl Vcpu {
    /// A vCPU on `ram` that runs on `cpu`; the caller is pinned there
    /// already (a VMX VMCS is made current on this CPU).
    pub fn new(ram: Arc<GuestRam>, cpu: usize) -> Result<Arc<Vcpu>, Unavailable> {
        let hw = HwVcpu::new(ram.npt_root())?;
        Ok(Arc::new(Vcpu {
            cpu,
            kick: AtomicBool::new(false),
            ram,
            running: AtomicBool::new(false),
            exit_by: AtomicU64::new(NO_EXIT_BY),
            hw: UnsafeCell::new(hw),
        }))
    }

    /// The VMM needs control back by `ns` (`u64::MAX`: no deadline of its
    /// own).
    pub fn set_exit_by(&self, ns: u64) {
        self.exit_by.store(ns.max(1), Ordering::Relaxed);
    }

    /// When a run starting at `now` must end at the latest.
    pub fn run_deadline(&self, now: u64) -> u64 {
        let exit_by = match self.exit_by.load(Ordering::Relaxed) {
            NO_EXIT_BY => None,
            by => Some(by),
        };
        run_deadline(exit_by, now)
    }

    pub fn ram(&self) -> &Arc<GuestRam> {
        &self.ram
    }

    /// The CPU this vCPU runs on.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Pins the calling thread to this vCPU's CPU, where its hardware
    /// state is (a load once pinned).
    pub fn pin_caller(&self) -> Result<(), Error> {
        if crate::sched::current().pinned_cpu() != Some(self.cpu) {
            crate::sched::pin_current(Some(self.cpu))?;
        }
        Ok(())
    }

    /// Gets the vCPU out of guest mode soon: at once if it runs there now
    /// (an interrupt to its CPU makes it exit), else at its next entry,
    /// which exits right after delivering what it injects. For the VMM's
    /// threads: an interrupt for this vCPU came from another one.
    pub fn kick(&self) {
        self.kick.store(true, Ordering::SeqCst);
        if self.running.load(Ordering::SeqCst) && self.cpu != crate::percpu::index() {
            if let Some(cpu) = crate::percpu::cpu(self.cpu) {
                crate::arch::apic::send_vector(cpu.apic_id(), crate::arch::trap::VECTOR_RESCHEDULE);
            }
        }
    }

    /// Whether a kick waits (and clears it): the run about to start exits
    /// at once.
    pub fn take_kick(&self) -> bool {
        self.kick.swap(false, Ordering::SeqCst)
    }

    pub fn acquire(&self) -> Result<VcpuGuard<'_>, Error> {
        if self.running.swap(true, Ordering::SeqCst) {
            // Another thread runs (or controls) this vCPU.
            return Err(Error::Busy);
        }
        Ok(VcpuGuard { vcpu: self })
    }
}

impl VcpuGuard<'_> {
    pub fn hw(&mut self) -> &mut HwVcpu {
        // SAFETY: holding the guard means we won `running`; nobody else
        // touches `hw` until the guard drops.
        unsafe { &mut *self.vcpu.hw.get() }
    }
}

impl Drop for VcpuGuard<'_> {
    fn drop(&mut self) {
        self.vcpu.running.store(false, Ordering::Release);
    }
}
