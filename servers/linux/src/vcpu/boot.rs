//! Building the guest: the boot files, the VM with its console, Linux
//! loaded by the 64-bit boot protocol, and what the thread sleeps on.

use alloc::format;
use alloc::sync::Arc;

use alloc::string::String;

use starina::abi::Readiness;
use starina::bootfs;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::hypervisor::GuestRam;
use starina::hypervisor::Hypervisor;
use starina::hypervisor::Vcpu;
use starina::hypervisor::VcpuControl;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::timer::unix_seconds;
use starina::timer::Timer;
use starina::Error;
use starina_vmm::boot;
use starina_vmm::boot::BootConfig;
use starina_vmm::boot::BzImage;
use starina_vmm::cpuid::CpuidPolicy;
use starina_vmm::cpuid::CpuidResult;
use starina_vmm::virtio::console::Console;
use starina_vmm::virtio::net::Net;
use starina_vmm::vm::DeviceSlot;
use starina_vmm::vm::Vm;

use super::smp::Core;
use super::smp::Smp;
use super::Guest;
use super::Job;
use super::VmConfig;
use crate::fuse_tally::FuseTally;
use crate::shared::Status;

/// The guest kernel and initramfs from the boot file system.
struct BootFiles {
    kernel: &'static [u8],
    bz: BzImage<'static>,
    initramfs: &'static [u8],
}

impl Guest {
    /// Creates the VM and loads Linux into it.
    pub(super) fn boot(job: Job) -> Result<Guest, Status> {
        let Job {
            hypervisor,
            wake,
            shared,
            config,
            fs,
            root_disk,
        } = job;
        let files = boot_files(&config)?;
        let (mut ram, vcpu) = create_vm(&hypervisor, config.memory_bytes)?;
        let mut vm = Vm::new(CpuidPolicy::default(), host_cpuid, unix_seconds(), now_ns());
        // The guest's clock: kvm-clock over the kernel's (no calibration,
        // Starina's wall clock).
        vm.enable_kvm_clock(starina::hypervisor::host_clock(), &mut ram);
        vm.enable_apic(config.vcpus, &mut ram)
            .map_err(|e| Status::Unavailable(format!("cannot write the MP table: {e:?}")))?;
        let xcr0_mask = vm.xcr0_mask();
        vcpu.control(VcpuControl::Xcr0Allowed(xcr0_mask))
            .map_err(|e| {
                Status::Unavailable(format!(
                    "the kernel refuses XCR0 mask {xcr0_mask:#x} from CPUID: {e}"
                ))
            })?;
        let console = vm.add_virtio(Console::new()).map_err(|e| {
            Status::Unavailable(format!("no virtio-mmio slot for the console: {e}"))
        })?;
        let mut cmdline = config.cmdline.clone();
        let fuse = Arc::new(spin::Mutex::new(FuseTally::default()));
        if let Some(channel) = fs {
            add_share(&mut vm, channel, &config, &mut cmdline, fuse.clone());
        }
        let net = if config.net {
            add_nic(&mut vm, &mut cmdline)
        } else {
            None
        };
        let mut disk = super::disk::attach(&mut vm, root_disk, &mut cmdline);
        let devices = vm.virtio_devices();
        let info = boot::load_linux(
            &mut ram,
            &files.bz,
            &BootConfig {
                cmdline: &cmdline,
                initrd: Some(files.initramfs),
                virtio_devices: &devices,
            },
        )
        .map_err(|e| Status::Unavailable(format!("cannot load Linux: {e}")))?;
        // The guest starts in long mode: its EFER MSR must say so, or its
        // first read-modify-write of EFER (to set NXE) drops LME/LMA.
        vm.set_efer(info.vcpu.efer);
        log::info!(
            "{}: {} MiB RAM, {} vCPUs, kernel {} KiB (boot protocol {}.{:02}), initramfs {} KiB, command line: {}",
            starina::abi::markers::LINUX_BOOTING,
            config.memory_bytes >> 20,
            vm.vcpu_count(),
            files.kernel.len() / 1024,
            files.bz.protocol >> 8,
            files.bz.protocol & 0xff,
            files.initramfs.len() / 1024,
            info.cmdline
        );
        let count = vm.vcpu_count();
        let (smp, mut wakes) = Smp::new(Core { vm, ram }, count)
            .map_err(|e| Status::Crashed(format!("channels for the vCPU threads: {e}")))?;
        let smp_wake = wakes.remove(0);
        let (poll, timer) = wake_sources(&wake)?;
        poll.add(smp_wake.id(), Readiness::READABLE)
            .map_err(|e| Status::Crashed(format!("poll: {e}")))?;
        if let Some(disk) = &mut disk {
            disk.watch(&poll)
                .map_err(|e| Status::Crashed(format!("poll: the root disk: {e}")))?;
        }
        let vcpu = Arc::new(vcpu);
        smp.set_vcpu(0, vcpu.clone());
        for (i, wake) in wakes.into_iter().enumerate() {
            super::ap::spawn(i + 1, smp.clone(), shared.clone(), wake, xcr0_mask);
        }
        Ok(Guest {
            smp,
            smp_wake,
            vcpu,
            state: info.vcpu,
            console,
            net,
            net_left: false,
            disk,
            shared,
            wake,
            poll,
            timer,
            buf: MessageBuffer::new(),
            pending_exception: None,
            input_left: false,
            exits: 0,
            last_exit: None,
            exit_by: 0,
            stats: Default::default(),
            reported: Default::default(),
            fuse,
            fuse_reported: Default::default(),
        })
    }
}

/// Gives the guest the native file system as virtio-fs, and tells the
/// agent where to mount it (`starina.share=<tag>:<dir>`). Without it the
/// guest runs on, without the share.
fn add_share(
    vm: &mut Vm,
    channel: Channel,
    config: &VmConfig,
    cmdline: &mut String,
    tally: Arc<spin::Mutex<FuseTally>>,
) {
    let device = match crate::files::device(channel, config.share_fs_tag, tally) {
        Ok(device) => device,
        Err(why) => {
            log::warn!("no native files in Linux: {why}");
            return;
        }
    };
    if let Err(e) = vm.add_virtio(device) {
        log::warn!("no native files in Linux: no virtio-mmio slot for virtio-fs: {e}");
        return;
    }
    cmdline.push_str(&format!(
        " starina.share={}:{}",
        config.share_fs_tag, config.share_fs_mount
    ));
}

/// Gives the guest its NIC on the NAT's private link, and tells the agent
/// its addresses (`starina.net=...`). Without a slot the guest runs on,
/// without a network.
fn add_nic(vm: &mut Vm, cmdline: &mut String) -> Option<DeviceSlot<Net>> {
    match vm.add_virtio(Net::new(crate::net::GUEST_MAC)) {
        Ok(slot) => {
            cmdline.push(' ');
            cmdline.push_str(&crate::net::cmdline());
            Some(slot)
        }
        Err(e) => {
            log::warn!("no network in Linux: no virtio-mmio slot for virtio-net: {e}");
            None
        }
    }
}

fn boot_files(config: &VmConfig) -> Result<BootFiles, Status> {
    let kernel = bootfs::file(config.kernel_file).map_err(|e| {
        Status::Unavailable(format!(
            "boot file '{}': {e} (scripts/starina packs it when the profile has the linux server)",
            config.kernel_file
        ))
    })?;
    let initramfs = bootfs::file(config.initramfs_file)
        .map_err(|e| Status::Unavailable(format!("boot file '{}': {e}", config.initramfs_file)))?;
    let bz = BzImage::parse(kernel)
        .map_err(|e| Status::Unavailable(format!("boot file '{}': {e}", config.kernel_file)))?;
    Ok(BootFiles {
        kernel,
        bz,
        initramfs,
    })
}

fn create_vm(hypervisor: &Hypervisor, memory_bytes: u64) -> Result<(GuestRam, Vcpu), Status> {
    hypervisor.create_vm(memory_bytes).map_err(|e| match e {
        Error::NotSupported => Status::Unavailable(format!(
            "cannot create a VM: {e} (this CPU offers no usable hardware virtualization; \
             under QEMU use -cpu max, or --kvm on a KVM host with nested virtualization)"
        )),
        e => Status::Unavailable(format!(
            "cannot create a VM with {} MiB of RAM: {e}",
            memory_bytes >> 20
        )),
    })
}

/// What the thread sleeps on while the guest halts: the main thread's
/// wake-ups and a timer for the guest's next tick.
fn wake_sources(wake: &Channel) -> Result<(Poll, Timer), Status> {
    let poll = Poll::create().map_err(|e| Status::Crashed(format!("poll: {e}")))?;
    let timer = Timer::create().map_err(|e| Status::Crashed(format!("timer: {e}")))?;
    poll.add(wake.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
        .and_then(|()| poll.add(timer.id(), Readiness::READABLE))
        .map_err(|e| Status::Crashed(format!("poll: {e}")))?;
    Ok((poll, timer))
}

fn host_cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let [eax, ebx, ecx, edx] = starina::hypervisor::host_cpuid(leaf, subleaf);
    CpuidResult { eax, ebx, ecx, edx }
}
