//! Panics. A component's panic tears down that component alone (its
//! handles close, its peers see peer-closed, its restart policy applies);
//! a panic in the kernel proper stops the machine.
//!
//! Without unwinding, the panicking component's heap objects still owned by
//! its stack frames are not freed; everything it held through handles is.

use core::sync::atomic::AtomicBool;
use core::sync::atomic::Ordering;

use starina::abi::markers;

use crate::process::ExitReason;

static KERNEL_PANICKING: AtomicBool = AtomicBool::new(false);

/// The exit code QEMU reports (through isa-debug-exit) on a kernel panic.
pub const KERNEL_PANIC_EXIT_CODE: u8 = markers::KERNEL_PANIC_EXIT_CODE;

pub fn handle(info: &core::panic::PanicInfo<'_>) -> ! {
    if let Some(thread) = crate::sched::try_current() {
        let is_component = thread.process.is_component();
        if is_component
            && !crate::arch::irq::holds_locks()
            && !crate::interrupt::in_interrupt()
            && !thread.process.has_exited()
        {
            // From here the kernel works on the component's behalf: its
            // allocations are not refused for the component's budget (a
            // component that panicked because its budget ran out must
            // still be torn down). Never dropped: the thread ends below.
            core::mem::forget(crate::sched::InKernel::enter());
            log::error!("{} {}: {}", thread.process.name, markers::COMPONENT_PANICKED, info);
            let process = thread.process.clone();
            if process.command.is_some() {
                let text = alloc::format!("{}: panicked: {}\n", process.name, info.message());
                crate::startup::tell_stderr(&process, &text);
            }
            crate::startup::component_ended(&process, ExitReason::Panicked);
            crate::sched::exit_current_thread();
        }
    }

    crate::arch::cpu::disable_interrupts();
    if KERNEL_PANICKING.swap(true, Ordering::SeqCst) {
        crate::klog::write_unlocked(format_args!("\nkernel: panicked while panicking\n"));
        crate::arch::power_off(KERNEL_PANIC_EXIT_CODE);
    }
    crate::klog::write_unlocked(format_args!("\n{} {info}\n", markers::KERNEL_PANIC));
    crate::arch::power_off(KERNEL_PANIC_EXIT_CODE)
}
