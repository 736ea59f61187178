//! The bootstrap vCPU's thread (and, for a guest with several vCPUs, one
//! thread per application processor, `ap`): builds the VM (guest RAM, devices, Linux loaded by the
//! 64-bit boot protocol), then runs the vCPU and hands each exit to the
//! VMM (`starina_vmm::vm::Vm::handle_exit`).
//!
//! It moves bytes between the virtio-console (the guest agent's `/dev/hvc0`)
//! and the shared queues, serves the native file system to the guest's
//! virtio-fs (`crate::files`, answered within the exit), logs the guest's serial console line by line, and
//! sleeps while the guest halts, until the guest's next timer tick or until
//! the main thread kicks it.
//!
//! | module | job |
//! |---|---|
//! | `boot` | the VM and Linux in it, from the spec's config |
//! | `run` | the run loop: exits, injections, sleeping, why the guest stopped |
//! | `smp` | what the vCPU threads share: the VM under a lock, kicks, wake-ups |
//! | `ap` | an application processor's thread: INIT/SIPI, real mode, its run loop |
//! | `console` | bytes between the virtio-console and the main thread |
//! | `net` | frames between the virtio-net and the main thread's NAT |
//! | `disk` | the root disk: virtio-blk over the driver's `linux_root` |
//! | `exit_stats` | exits by kind and what handling them cost, for the log |

mod boot;
mod console;
mod disk;
mod exit_stats;
mod net;
mod run;
mod smp;
mod ap;

use alloc::format;

use alloc::string::String;
use alloc::sync::Arc;


use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::hypervisor::Hypervisor;
use starina::hypervisor::Injection;
use starina::hypervisor::Vcpu;
use starina::poll::Poll;
use starina::timer::Timer;
use starina_vmm::exit::VcpuState;
use starina_vmm::exit::VmExit;
use starina_vmm::virtio::console::Console;
use starina_vmm::virtio::net::Net;
use starina_vmm::vm::DeviceSlot;

use crate::fuse_tally::FuseTally;
use crate::shared::Shared;
use crate::shared::Status;

/// What the VM is made of (from the spec's config).
pub struct VmConfig {
    pub memory_bytes: u64,
    /// The guest's CPUs (x2APIC local APICs, an I/O APIC, an MP table).
    pub vcpus: usize,
    pub kernel_file: &'static str,
    pub initramfs_file: &'static str,
    pub cmdline: String,
    /// The virtio-fs tag the native file system is shared as, and where
    /// the guest mounts it.
    pub share_fs_tag: &'static str,
    pub share_fs_mount: &'static str,
    /// Give the guest a virtio-net NIC (its frames go to the main thread's
    /// NAT) and tell the agent its addresses.
    pub net: bool,
}

/// Everything the vCPU thread needs.
pub struct Job {
    pub hypervisor: Hypervisor,
    pub wake: Channel,
    pub shared: Arc<Shared>,
    pub config: VmConfig,
    /// The fs server's `fs` channel: the guest gets it as virtio-fs.
    pub fs: Option<Channel>,
    /// The virtio_blk driver's `linux_root` channel: the guest's root
    /// disk, when the driver says hello on it.
    pub root_disk: Option<Channel>,
}

/// The vCPU thread: boots and runs the guest, then tells the main thread
/// why it stopped.
pub fn thread_main(job: Job) {
    let shared = job.shared.clone();
    let wake = match job.wake.handle().duplicate(starina::abi::Rights::DEFAULT) {
        Ok(h) => Channel::from_handle(h),
        Err(e) => {
            shared.stop(Status::Crashed(format!(
                "cannot duplicate the wake channel: {e}"
            )));
            return;
        }
    };
    let status = match Guest::boot(job) {
        Ok(mut guest) => guest.run(),
        Err(status) => status,
    };
    match &status {
        Status::Crashed(why) => log::error!("guest stopped: {why}"),
        Status::Unavailable(why) => log::error!("no Linux VM: {why}"),
        Status::Running => {}
    }
    shared.stop(status);
    Shared::kick(&shared.main_kick, &wake);
}

/// The running guest and what the vCPU thread needs around it.
struct Guest {
    /// The VM, shared with the other vCPUs' threads.
    smp: Arc<smp::Smp>,
    /// This thread's wake-up from the other vCPU threads.
    smp_wake: Channel,
    vcpu: Arc<Vcpu>,
    state: VcpuState,
    /// The guest agent's virtio-console (`/dev/hvc0`).
    console: DeviceSlot<Console>,
    /// The guest's NIC, when the VM has a network.
    net: Option<DeviceSlot<Net>>,
    /// Frames for the guest were left in the shared queue (the NIC had no
    /// room): look again at the next exit.
    net_left: bool,
    /// The guest's root disk (`/dev/vda`), when it has one.
    disk: Option<disk::RootDisk>,
    shared: Arc<Shared>,
    wake: Channel,
    poll: Poll,
    timer: Timer,
    buf: MessageBuffer,
    /// An exception to deliver on the next entry.
    pending_exception: Option<Injection>,
    /// `to_guest` still held bytes the console could not take.
    input_left: bool,
    /// Exits handled so far, and the last one (for the log when the guest
    /// dies).
    exits: u64,
    last_exit: Option<VmExit>,
    /// What the kernel was last told of when the VMM needs control back
    /// ([`VcpuControl::ExitBy`]).
    ///
    /// [`VcpuControl::ExitBy`]: starina::hypervisor::VcpuControl::ExitBy
    exit_by: u64,
    /// Exits by kind, logged when the agent is ready and when the guest
    /// stops.
    stats: exit_stats::ExitStats,
    /// `stats` when a process ended last (the log gives what came after).
    reported: exit_stats::ExitStats,
    /// FUSE requests the virtio-fs device answered, and the counts when a
    /// process ended last.
    fuse: Arc<spin::Mutex<FuseTally>>,
    fuse_reported: FuseTally,
}
