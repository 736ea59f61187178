//! The vCPU thread: builds the VM (guest RAM, devices, Linux loaded by the
//! 64-bit boot protocol), then runs the vCPU and hands each exit to the
//! VMM (`starina_vmm::vm::Vm::handle_exit`).
//!
//! It moves bytes between the virtio-console (the guest agent's `/dev/hvc0`)
//! and the shared queues, logs the guest's serial console line by line, and
//! sleeps while the guest halts, until the guest's next timer tick or until
//! the main thread kicks it.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use starina::abi::Readiness;
use starina::bootfs;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::hypervisor::GuestRam;
use starina::hypervisor::Hypervisor;
use starina::hypervisor::Injection;
use starina::hypervisor::Vcpu;
use starina::hypervisor::VcpuControl;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::timer::Timer;
use starina::Error;
use starina_vmm::boot;
use starina_vmm::boot::BootConfig;
use starina_vmm::boot::BzImage;
use starina_vmm::cpuid::CpuidPolicy;
use starina_vmm::cpuid::CpuidResult;
use starina_vmm::exit::VcpuState;
use starina_vmm::exit::VmExit;
use starina_vmm::msr::MsrEffect;
use starina_vmm::virtio::console::Console;
use starina_vmm::vm::DeviceSlot;
use starina_vmm::vm::ExitAction;
use starina_vmm::vm::ExitContext;
use starina_vmm::vm::SlotError;
use starina_vmm::vm::Vm;

use crate::shared::Shared;
use crate::shared::Status;
use crate::shared::INPUT_HIGH_WATER;
use crate::shared::OUTPUT_HIGH_WATER;

/// What the VM is made of (from the spec's config).
pub struct VmConfig {
    pub memory_bytes: u64,
    pub kernel_file: &'static str,
    pub initramfs_file: &'static str,
    pub cmdline: String,
}

/// Everything the vCPU thread needs, handed over through [`JOB`] (a thread
/// entry takes only a `usize`).
pub struct Job {
    pub hypervisor: Hypervisor,
    pub wake: Channel,
    pub shared: Arc<Shared>,
    pub config: VmConfig,
}

/// Set by the main thread right before it spawns the vCPU thread.
pub static JOB: spin::Mutex<Option<Job>> = spin::Mutex::new(None);

/// The vCPU thread's entry point.
pub fn thread_main(_arg: usize) {
    let Some(job) = JOB.lock().take() else {
        log::error!("vCPU thread started without a VM to run");
        return;
    };
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

fn host_cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let [eax, ebx, ecx, edx] = starina::hypervisor::host_cpuid(leaf, subleaf);
    CpuidResult { eax, ebx, ecx, edx }
}

struct Guest {
    vm: Vm,
    ram: GuestRam,
    vcpu: Vcpu,
    state: VcpuState,
    /// The guest agent's virtio-console (`/dev/hvc0`).
    console: DeviceSlot<Console>,
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
}

impl Guest {
    /// Creates the VM and loads Linux into it.
    fn boot(job: Job) -> Result<Guest, Status> {
        let Job {
            hypervisor,
            wake,
            shared,
            config,
        } = job;
        let kernel = bootfs::file(config.kernel_file).map_err(|e| {
            Status::Unavailable(format!(
                "boot file '{}': {e} (scripts/starina packs it when the profile has the linux server)",
                config.kernel_file
            ))
        })?;
        let initramfs = bootfs::file(config.initramfs_file).map_err(|e| {
            Status::Unavailable(format!("boot file '{}': {e}", config.initramfs_file))
        })?;
        let bz = BzImage::parse(kernel)
            .map_err(|e| Status::Unavailable(format!("boot file '{}': {e}", config.kernel_file)))?;
        let (mut ram, vcpu) = hypervisor
            .create_vm(config.memory_bytes)
            .map_err(|e| match e {
                Error::NotSupported => Status::Unavailable(format!(
                    "cannot create a VM: {e} (this CPU offers no usable hardware virtualization; \
                     under QEMU use -cpu max, or --kvm on a KVM host with nested virtualization)"
                )),
                e => Status::Unavailable(format!(
                    "cannot create a VM with {} MiB of RAM: {e}",
                    config.memory_bytes >> 20
                )),
            })?;
        let mut vm = Vm::new(CpuidPolicy::default(), host_cpuid, 0, now_ns());
        let console = vm.add_virtio(Console::new()).map_err(|e| {
            Status::Unavailable(format!("no virtio-mmio slot for the console: {e}"))
        })?;
        let devices = vm.virtio_devices();
        let info = boot::load_linux(
            &mut ram,
            &bz,
            &BootConfig {
                cmdline: &config.cmdline,
                initrd: Some(initramfs),
                virtio_devices: &devices,
            },
        )
        .map_err(|e| Status::Unavailable(format!("cannot load Linux: {e}")))?;
        // The guest starts in long mode: its EFER MSR must say so, or its
        // first read-modify-write of EFER (to set NXE) drops LME/LMA.
        vm.set_efer(info.vcpu.efer);
        log::info!(
            "booting Linux: {} MiB RAM, kernel {} KiB (boot protocol {}.{:02}), initramfs {} KiB, command line: {}",
            config.memory_bytes >> 20,
            kernel.len() / 1024,
            bz.protocol >> 8,
            bz.protocol & 0xff,
            initramfs.len() / 1024,
            info.cmdline
        );
        let poll = Poll::create().map_err(|e| Status::Crashed(format!("poll: {e}")))?;
        let timer = Timer::create().map_err(|e| Status::Crashed(format!("timer: {e}")))?;
        poll.add(wake.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
            .and_then(|()| poll.add(timer.id(), Readiness::READABLE))
            .map_err(|e| Status::Crashed(format!("poll: {e}")))?;
        Ok(Guest {
            vm,
            ram,
            vcpu,
            state: info.vcpu,
            console,
            shared,
            wake,
            poll,
            timer,
            buf: MessageBuffer::new(),
            pending_exception: None,
            input_left: false,
            exits: 0,
            last_exit: None,
        })
    }

    /// Runs the guest until it stops; returns why.
    fn run(&mut self) -> Status {
        loop {
            if let Err(e) = self.exchange() {
                return self.crashed(&format!("VMM: the console: {e}"));
            }
            let inject = self.next_injection();
            let exit = match self.vcpu.run(&mut self.state, inject) {
                Ok(exit) => exit,
                Err(e) => return Status::Crashed(format!("vCPU run failed: {e}")),
            };
            self.exits += 1;
            self.last_exit = Some(exit);
            let now = now_ns();
            let ctx = ExitContext {
                now_ns: now,
                // No TSC reading for components; only guest reads of the
                // TSC MSR (rare: Linux uses RDTSC) see this.
                host_tsc: now,
            };
            let action = self
                .vm
                .handle_exit(&exit, &mut self.state, &mut self.ram, ctx);
            match action {
                Ok(ExitAction::Resume) => {}
                Ok(ExitAction::Halt) => {
                    if !self.state.interrupts_enabled() {
                        return self.crashed("the guest halted with interrupts off (powered off)");
                    }
                    self.sleep();
                    self.vm.update_irqs(now_ns());
                }
                Ok(ExitAction::InjectException { vector, error_code }) => {
                    self.pending_exception = Some(Injection::Exception { vector, error_code });
                }
                Ok(ExitAction::ApplyMsr(effect)) => {
                    if let Err(e) = self.apply_msr(effect) {
                        return Status::Crashed(format!("cannot apply {effect:?}: {e}"));
                    }
                }
                Ok(ExitAction::Reset) => {
                    return self.crashed("the guest rebooted (a kernel panic, or reboot)")
                }
                Ok(ExitAction::Shutdown) => return self.crashed("the guest triple-faulted"),
                Err(e) => return self.crashed(&format!("VMM: {e} (after {exit:?})")),
            }
        }
    }

    fn crashed(&mut self, why: &str) -> Status {
        self.log_console();
        if !matches!(self.last_exit, Some(VmExit::Io { .. })) {
            self.log_state();
        }
        let partial = self.vm.serial().partial_line();
        if !partial.is_empty() {
            log::info!("[guest] {}", String::from_utf8_lossy(partial));
        }
        Status::Crashed(String::from(why))
    }

    /// The vCPU's registers, for the log when the guest died unexpectedly.
    fn log_state(&self) {
        let st = &self.state;
        log::info!(
            "guest state after {} exits (last {:?}): rip={:#x} rsp={:#x} rflags={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x}",
            self.exits,
            self.last_exit,
            st.rip,
            st.gprs[4],
            st.rflags,
            st.cr0,
            st.cr2,
            st.cr3,
            st.cr4,
            st.efer,
            st.cs.selector
        );
    }

    fn apply_msr(&mut self, effect: MsrEffect) -> Result<(), Error> {
        match effect {
            MsrEffect::TscOffset(offset) => self.vcpu.control(VcpuControl::TscOffset(offset)),
            MsrEffect::Pat(pat) => self.vcpu.control(VcpuControl::Pat(pat)),
            // Already in the VcpuState the backend loads on entry.
            MsrEffect::Efer(_) | MsrEffect::None => Ok(()),
            // Not offered in CPUID (Paravirt::None), so the VMM refuses
            // these MSRs before they get here.
            MsrEffect::KvmSystemTime(_) | MsrEffect::KvmWallClock(_) => Ok(()),
        }
    }

    /// What to deliver on the next entry: a pending exception first, else
    /// the PIC's interrupt.
    ///
    /// The kernel delivers an `Interrupt` exactly once, as soon as the guest
    /// can take it, so the PIC is acknowledged (INTA: pending -> in service)
    /// when the interrupt is handed over. While the guest has interrupts
    /// off, nothing is acknowledged: `Window` asks for an exit as soon as it
    /// turns them on, and the next entry hands the interrupt over.
    fn next_injection(&mut self) -> Injection {
        if let Some(e) = self.pending_exception.take() {
            return e;
        }
        match self.vm.pending_interrupt() {
            Some(_) if self.state.interrupts_enabled() => match self.vm.acknowledge_interrupt() {
                Some(vector) => Injection::Interrupt(vector),
                None => Injection::None,
            },
            Some(_) => Injection::Window,
            None => Injection::None,
        }
    }

    /// Sleeps while the guest halts: until its next timer interrupt is due
    /// or the main thread kicks.
    fn sleep(&mut self) {
        if self.input_left || self.shared.vcpu_kick.load(Ordering::Acquire) {
            return;
        }
        let now = now_ns();
        match self.vm.next_deadline_ns() {
            Some(t) if t <= now => return,
            Some(t) if self.timer.set(t - now).is_err() => return,
            _ => {}
        }
        let _ = self.poll.wait();
    }

    /// Moves bytes between the console and the shared queues, and logs the
    /// guest's serial console.
    fn exchange(&mut self) -> Result<(), SlotError> {
        self.log_console();
        let kicked = self.shared.vcpu_kick.swap(false, Ordering::AcqRel);
        if kicked {
            // Drain the wake-ups (their content is the flag).
            while self.wake.try_recv(&mut self.buf).is_ok() {}
        }
        let mut poke = false;
        if kicked || self.input_left {
            let mut inner = self.shared.inner.lock();
            if !inner.to_guest.is_empty() {
                let n = self
                    .vm
                    .virtio_device_mut(self.console)?
                    .push_rx(&inner.to_guest);
                inner.to_guest.drain(..n);
                poke |= n > 0;
            }
            self.input_left = !inner.to_guest.is_empty();
            let room = inner.to_guest.len() < INPUT_HIGH_WATER / 2;
            drop(inner);
            if room && self.shared.input_paused.load(Ordering::Acquire) {
                Shared::kick(&self.shared.main_kick, &self.wake);
            }
        }
        // While the main thread is behind, guest output stays in the
        // console (and then in the guest): backpressure, not loss.
        if !self.shared.output_paused.load(Ordering::Acquire) {
            let tx = self.vm.virtio_device_mut(self.console)?.take_tx();
            if !tx.is_empty() {
                let mut inner = self.shared.inner.lock();
                inner.from_guest.extend_from_slice(&tx);
                let waiting =
                    inner.from_guest.len() + self.shared.client_backlog.load(Ordering::Acquire);
                drop(inner);
                if waiting > OUTPUT_HIGH_WATER {
                    self.shared.output_paused.store(true, Ordering::Release);
                }
                Shared::kick(&self.shared.main_kick, &self.wake);
                // Transmit buffers held back while the console was full
                // move on now.
                poke = true;
            } else if kicked {
                // Output was resumed: let held-back buffers through.
                poke = true;
            }
        }
        if poke {
            self.vm.poll_virtio(self.console, &mut self.ram, now_ns())?;
        }
        Ok(())
    }

    fn log_console(&mut self) {
        for line in self.vm.serial_mut().take_lines() {
            log::info!("[guest] {line}");
        }
    }
}
