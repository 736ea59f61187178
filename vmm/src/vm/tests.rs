//! Host tests of the whole VM: exits through `handle_exit`, the device
//! accessors and the virtio slots.

use alloc::vec::Vec;

use super::*;
use crate::boot;
use crate::cpuid::CpuidResult;
use crate::exit::cr;
use crate::exit::Access;
use crate::exit::Gpr;
use crate::exit::VcpuState;
use crate::exit::VmExit;
use crate::memory::VecMemory;
use crate::virtio::console::Console;
use crate::virtio::mmio::reg;
use crate::virtio::mmio::MAGIC;
use crate::virtio::mmio::WINDOW_SIZE;
use crate::virtio::queue::Virtqueue;
use crate::virtio::DeviceError;
use crate::virtio::VirtioDevice;

fn host_cpuid(leaf: u32, _: u32) -> CpuidResult {
    match leaf {
        0 => CpuidResult {
            eax: 0xd,
            ..Default::default()
        },
        0x8000_0000 => CpuidResult {
            eax: 0x8000_0008,
            ..Default::default()
        },
        _ => CpuidResult {
            eax: 1,
            ebx: 2,
            ecx: u32::MAX,
            edx: u32::MAX,
        },
    }
}

const CTX: ExitContext = ExitContext {
    now_ns: 0,
    host_tsc: 0,
    vcpu: 0,
};

pub(super) fn vm() -> Vm {
    Vm::new(CpuidPolicy::default(), host_cpuid, 0, 0)
}

fn out(vm: &mut Vm, st: &mut VcpuState, mem: &mut VecMemory, port: u16, v: u8) -> ExitAction {
    vm.handle_exit(
        &VmExit::Io {
            port,
            size: 1,
            access: Access::Write,
            value: v as u32,
            string: false,
            rep: false,
            next_rip: st.rip + 1,
        },
        st,
        mem,
        CTX,
    )
    .unwrap()
}

#[test]
fn serial_output_through_io_exits() {
    let mut vm = vm();
    let mut st = VcpuState::default();
    let mut mem = VecMemory::new(1 << 20);
    for b in b"Linux version 6.12\n" {
        assert_eq!(
            out(&mut vm, &mut st, &mut mem, 0x3f8, *b),
            ExitAction::Resume
        );
    }
    assert_eq!(st.rip, 19);
    assert_eq!(
        vm.serial_mut().take_lines().next().unwrap(),
        "Linux version 6.12"
    );
    // IN merges into AL only.
    st.set_gpr(Gpr::Rax, 0x1234_5678_9abc_def0);
    vm.handle_exit(
        &VmExit::Io {
            port: 0x3fd,
            size: 1,
            access: Access::Read,
            value: 0,
            string: false,
            rep: false,
            next_rip: 100,
        },
        &mut st,
        &mut mem,
        CTX,
    )
    .unwrap();
    assert_eq!(st.gpr(Gpr::Rax), 0x1234_5678_9abc_de60);
}

#[test]
fn i8042_reset_request() {
    let mut vm = vm();
    let mut st = VcpuState::default();
    let mut mem = VecMemory::new(1 << 20);
    assert_eq!(
        out(&mut vm, &mut st, &mut mem, 0x64, 0xfe),
        ExitAction::Reset
    );
}

#[test]
fn cpuid_msr_hlt_vmmcall() {
    let mut vm = vm();
    let mut st = VcpuState::default();
    let mut mem = VecMemory::new(1 << 20);
    vm.handle_exit(
        &VmExit::Cpuid {
            leaf: 1,
            subleaf: 0,
        },
        &mut st,
        &mut mem,
        CTX,
    )
    .unwrap();
    assert_eq!(st.rip, 2);
    assert_ne!(st.gpr(Gpr::Rcx) & (1 << 31), 0);
    // Unknown MSR: #GP, RIP unchanged.
    let a = vm
        .handle_exit(
            &VmExit::Msr {
                access: Access::Read,
                index: 0xdead,
                value: 0,
            },
            &mut st,
            &mut mem,
            CTX,
        )
        .unwrap();
    assert_eq!(
        a,
        ExitAction::InjectException {
            vector: 13,
            error_code: Some(0)
        }
    );
    assert_eq!(st.rip, 2);
    // PAT read splits into EDX:EAX.
    vm.handle_exit(
        &VmExit::Msr {
            access: Access::Read,
            index: crate::msr::MSR_IA32_PAT,
            value: 0,
        },
        &mut st,
        &mut mem,
        CTX,
    )
    .unwrap();
    assert_eq!(st.gpr(Gpr::Rax), 0x0007_0406);
    assert_eq!(st.gpr(Gpr::Rdx), 0x0007_0406);
    assert_eq!(st.rip, 4);
    // HLT with nothing pending halts.
    assert_eq!(
        vm.handle_exit(&VmExit::Hlt, &mut st, &mut mem, CTX)
            .unwrap(),
        ExitAction::Halt
    );
    assert_eq!(st.rip, 5);
    vm.handle_exit(&VmExit::Vmmcall, &mut st, &mut mem, CTX)
        .unwrap();
    assert_eq!(st.gpr(Gpr::Rax), HYPERCALL_ENOSYS);
    assert_eq!(
        vm.handle_exit(&VmExit::Shutdown, &mut st, &mut mem, CTX)
            .unwrap(),
        ExitAction::Shutdown
    );
    assert!(vm
        .handle_exit(&VmExit::Invalid, &mut st, &mut mem, CTX)
        .is_err());
}

/// Linux-style PIC init (vectors 0x30.., interrupt mask `mask`), and the
/// PIT's channel 0 at 1193 ticks (1 ms).
fn pic_at_0x30_pit_at_1ms(vm: &mut Vm, mask: u32) {
    for (p, v) in [
        (0x20, 0x11),
        (0x21, 0x30),
        (0x21, 0x04),
        (0x21, 0x01),
        (0x21, mask),
        (0x43, 0x34),
        (0x40, 0xa9),
        (0x40, 0x04),
    ] {
        vm.io_out(p, 1, v, 0);
    }
}

#[test]
fn pit_tick_reaches_pic() {
    let mut vm = vm();
    pic_at_0x30_pit_at_1ms(&mut vm, 0xfe);
    vm.update_irqs(500_000);
    assert_eq!(vm.pending_interrupt(), None);
    let t = vm.next_deadline_ns().unwrap();
    vm.update_irqs(t);
    assert_eq!(vm.pending_interrupt(), Some(0x30));
    assert_eq!(vm.acknowledge_interrupt(), Some(0x30));
    // HLT with IF=1 and a pending interrupt resumes.
    vm.io_out(0x20, 1, 0x20, 0);
    vm.update_irqs(t + 1_000_000);
    let mut st = VcpuState {
        rflags: cr::RFLAGS_IF | 2,
        ..Default::default()
    };
    let mut mem = VecMemory::new(1 << 20);
    assert_eq!(
        vm.handle_exit(
            &VmExit::Hlt,
            &mut st,
            &mut mem,
            ExitContext {
                now_ns: t + 1_000_000,
                host_tsc: 0,
                vcpu: 0,
            }
        )
        .unwrap(),
        ExitAction::Resume
    );
}

/// A PIT port exit updates only the PIT's line (the fast path of
/// `handle_exit`): its tick still arrives, and the serial line, changed by
/// a serial exit, is still sampled then.
#[test]
fn pit_exits_deliver_the_tick_and_serial_exits_the_serial_line() {
    let mut vm = vm();
    // IRQ 0 and 4 unmasked.
    pic_at_0x30_pit_at_1ms(&mut vm, 0xee);
    let t = vm.next_deadline_ns().unwrap();
    let mut st = VcpuState::default();
    let mut mem = VecMemory::new(1 << 20);
    let read_42 = VmExit::Io {
        port: 0x42,
        size: 1,
        access: Access::Read,
        value: 0,
        string: false,
        rep: false,
        next_rip: 2,
    };
    let at = |now_ns| ExitContext {
        now_ns,
        host_tsc: 0,
        vcpu: 0,
    };
    vm.handle_exit(&read_42, &mut st, &mut mem, at(t - 1))
        .unwrap();
    assert_eq!(vm.pending_interrupt(), None);
    vm.handle_exit(&read_42, &mut st, &mut mem, at(t)).unwrap();
    assert_eq!(vm.acknowledge_interrupt(), Some(0x30));
    vm.io_out(0x20, 1, 0x20, t); // EOI
                                 // IER: "transmitter empty" interrupts on: the line rises at once.
    let ier_on = VmExit::Io {
        port: 0x3f9,
        size: 1,
        access: Access::Write,
        value: 0x02,
        string: false,
        rep: false,
        next_rip: 3,
    };
    vm.handle_exit(&ier_on, &mut st, &mut mem, at(t)).unwrap();
    assert_eq!(vm.pending_interrupt(), Some(0x34));
}

/// The guest reads the virtio magic with `mov 0x0(%rbx),%eax` through a
/// nested page fault; the VMM fetches the instruction via the boot page
/// tables.
#[test]
fn mmio_through_nested_page_fault() {
    let mut vm = vm();
    let slot = vm.add_virtio(Console::new()).unwrap();
    let dev = vm.virtio_window(slot).unwrap();
    assert_eq!(dev.base, VIRTIO_MMIO_BASE);
    assert_eq!(dev.irq, 5);
    let img = boot::tests::fake_bzimage(&[0u8; 64]);
    let k = boot::BzImage::parse(&img).unwrap();
    let mut mem = VecMemory::new(32 << 20);
    let info = boot::load_linux(
        &mut mem,
        &k,
        &boot::BootConfig {
            virtio_devices: &vm.virtio_devices(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(info.cmdline.contains("virtio_mmio.device=4K@0xd0000000:5"));
    let mut st = info.vcpu.clone();
    // mov 0x0(%rbx),%eax at the kernel entry.
    mem.write(st.rip, &[0x8b, 0x43, 0x00]).unwrap();
    st.set_gpr(Gpr::Rbx, VIRTIO_MMIO_BASE);
    let rip = st.rip;
    let fault = |gpa| VmExit::NestedPageFault {
        gpa,
        access: Access::Read,
        fetch: false,
        insn_bytes: [0; 15],
        insn_len: 0,
    };
    vm.handle_exit(
        &fault(VIRTIO_MMIO_BASE + reg::MAGIC),
        &mut st,
        &mut mem,
        CTX,
    )
    .unwrap();
    assert_eq!(st.gpr(Gpr::Rax), MAGIC as u64);
    assert_eq!(st.rip, rip + 3);
    // Device id via captured bytes (decode assists path).
    let mut bytes = [0u8; 15];
    bytes[..3].copy_from_slice(&[0x8b, 0x4b, 0x08]); // mov 0x8(%rbx),%ecx
    vm.handle_exit(
        &VmExit::NestedPageFault {
            gpa: VIRTIO_MMIO_BASE + reg::DEVICE_ID,
            access: Access::Read,
            fetch: false,
            insn_bytes: bytes,
            insn_len: 3,
        },
        &mut st,
        &mut mem,
        CTX,
    )
    .unwrap();
    assert_eq!(st.gpr(Gpr::Rcx), 3);
    // A store: movl $1,0x70(%rbx) -> status ACKNOWLEDGE.
    let rip = st.rip;
    mem.write(rip, &[0xc7, 0x43, 0x70, 1, 0, 0, 0]).unwrap();
    vm.handle_exit(
        &fault(VIRTIO_MMIO_BASE + reg::STATUS),
        &mut st,
        &mut mem,
        CTX,
    )
    .unwrap();
    assert_eq!(vm.virtio_status(slot), Ok(1));
    assert_eq!(st.rip, rip + 7);
    // Unclaimed MMIO reads all-ones.
    let rip = st.rip;
    mem.write(rip, &[0x8b, 0x03]).unwrap();
    vm.handle_exit(&fault(0xfed0_0000), &mut st, &mut mem, CTX)
        .unwrap();
    assert_eq!(st.gpr(Gpr::Rax), 0xffff_ffff);
    // Garbage instruction: a typed error, no panic.
    mem.write(st.rip, &[0x0f, 0x0b]).unwrap();
    assert!(matches!(
        vm.handle_exit(&fault(VIRTIO_MMIO_BASE), &mut st, &mut mem, CTX),
        Err(VmError::Decode { .. })
    ));
    // A fault inside RAM is a backend bug.
    assert_eq!(
        vm.handle_exit(&fault(0x1000), &mut st, &mut mem, CTX),
        Err(VmError::FaultInRam { gpa: 0x1000 })
    );
}

#[test]
fn virtio_irqs_are_distinct_and_bounded() {
    let mut vm = vm();
    let mut irqs = Vec::new();
    while let Ok(slot) = vm.add_virtio(Console::new()) {
        irqs.push(vm.virtio_window(slot).unwrap().irq);
    }
    assert_eq!(irqs.len(), VIRTIO_IRQS.len());
    assert_eq!(vm.add_virtio(Console::new()), Err(SlotError::Full));
    assert!(!irqs.contains(&4) && !irqs.contains(&0) && !irqs.contains(&2));
}

/// A device model other than the console, to tell slots apart by type.
struct Blank;

impl VirtioDevice for Blank {
    fn device_id(&self) -> u32 {
        crate::virtio::DEVICE_ID_BLOCK
    }
    fn features(&self) -> u64 {
        0
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn reset(&mut self) {}
    fn process(
        &mut self,
        _: &mut [Virtqueue],
        _: &mut dyn GuestMemory,
        _: Option<u16>,
    ) -> Result<(), DeviceError> {
        Ok(())
    }
}

#[test]
fn slots_name_their_device_and_window() {
    let mut vm = vm();
    let console = vm.add_virtio(Console::new()).unwrap();
    let blank = vm.add_virtio(Blank).unwrap();
    assert_eq!((console.index(), blank.index()), (0, 1));
    let w = vm.virtio_window(blank).unwrap();
    assert_eq!(
        (w.base, w.size, w.irq),
        (VIRTIO_MMIO_BASE + WINDOW_SIZE, WINDOW_SIZE, 6)
    );
    assert_eq!(vm.virtio_devices().len(), 2);
    assert_eq!(vm.virtio_devices()[1].base, w.base);
    // The console is reached by its slot, typed, with no borrow to fail.
    assert_eq!(vm.virtio_device_mut(console).unwrap().push_rx(b"hi"), 2);
    assert_eq!(vm.virtio_device(console).unwrap().rx_pending(), 2);
    assert_eq!(vm.virtio_device(blank).unwrap().device_id(), 2);
    assert_eq!(vm.virtio_status(console), Ok(0));
    // Polling a device the driver has not started is a no-op, not an IRQ.
    let mut mem = VecMemory::new(1 << 20);
    assert_eq!(vm.poll_virtio(console, &mut mem, 0), Ok(()));
    assert_eq!(vm.pending_interrupt(), None);
}

#[test]
fn slot_of_another_vm_is_an_error() {
    let mut a = vm();
    let console = a.add_virtio(Console::new()).unwrap();
    let blank = a.add_virtio(Blank).unwrap();
    let mut b = vm();
    b.add_virtio(Blank).unwrap();
    assert_eq!(
        b.virtio_device_mut(console).err(),
        Some(SlotError::OtherModel { index: 0 })
    );
    assert_eq!(
        b.virtio_device(blank).err(),
        Some(SlotError::NoSuchSlot { index: 1 })
    );
    let mut mem = VecMemory::new(1 << 20);
    assert_eq!(
        b.poll_virtio(blank, &mut mem, 0),
        Err(SlotError::NoSuchSlot { index: 1 })
    );
    assert_eq!(
        b.virtio_window(blank),
        Err(SlotError::NoSuchSlot { index: 1 })
    );
    assert_eq!(
        b.virtio_status(blank),
        Err(SlotError::NoSuchSlot { index: 1 })
    );
}

#[test]
fn serial_and_msr_accessors() {
    let mut vm = vm();
    let mut st = VcpuState::default();
    let mut mem = VecMemory::new(1 << 20);
    for b in b"boot\npart" {
        out(&mut vm, &mut st, &mut mem, 0x3f8, *b);
    }
    assert_eq!(vm.serial().partial_line(), b"part");
    assert_eq!(vm.serial_mut().take_lines().collect::<Vec<_>>(), ["boot"]);
    // The EFER set for a long-mode start is what the guest reads back.
    let efer = cr::EFER_LME | cr::EFER_LMA;
    vm.set_efer(efer);
    assert_eq!(vm.msrs().efer, efer);
    vm.handle_exit(
        &VmExit::Msr {
            access: Access::Read,
            index: crate::msr::MSR_EFER,
            value: 0,
        },
        &mut st,
        &mut mem,
        CTX,
    )
    .unwrap();
    assert_eq!(st.gpr(Gpr::Rax), efer & 0xffff_ffff);
    assert_eq!(vm.cpuid_policy().paravirt, CpuidPolicy::default().paravirt);
}

fn wrmsr(
    vm: &mut Vm,
    st: &mut VcpuState,
    mem: &mut VecMemory,
    index: u32,
    value: u64,
) -> ExitAction {
    vm.handle_exit(
        &VmExit::Msr {
            access: Access::Write,
            index,
            value,
        },
        st,
        mem,
        CTX,
    )
    .unwrap()
}

#[test]
fn kvm_clock_msrs_write_the_guest_structures() {
    let mut mem = VecMemory::new(1 << 20);
    let mut st = VcpuState::default();
    let mut vm = vm();
    // Not offered: the MSRs fault and CPUID says StarinaVMM.
    let system_time = crate::msr::MSR_KVM_SYSTEM_TIME_NEW;
    let gp = ExitAction::InjectException {
        vector: 13,
        error_code: Some(0),
    };
    assert_eq!(wrmsr(&mut vm, &mut st, &mut mem, system_time, 0x3001), gp);
    let host = HostClock {
        tsc: 7_000,
        ns: 3_000_000,
        ns_per_tsc_fp: 1 << 31,
        unix_ns_at_zero: 1_700_000_000_000_000_000,
        generation: 0,
    };
    vm.enable_kvm_clock(host, &mut mem);
    assert!(matches!(vm.cpuid_policy().paravirt, Paravirt::Kvm { .. }));
    let wall = crate::msr::MSR_KVM_WALL_CLOCK_NEW;
    assert_eq!(
        wrmsr(&mut vm, &mut st, &mut mem, wall, 0x3100),
        ExitAction::Resume
    );
    assert_eq!(
        wrmsr(&mut vm, &mut st, &mut mem, system_time, 0x3001),
        ExitAction::Resume
    );
    assert_eq!(st.rip, 4);
    let mut b = [0u8; 32];
    mem.read(0x3000, &mut b).unwrap();
    assert_eq!(&b[0..4], &2u32.to_le_bytes(), "even version");
    assert_eq!(&b[8..16], &7_000u64.to_le_bytes(), "tsc_timestamp");
    assert_eq!(&b[16..24], &3_000_000u64.to_le_bytes(), "system_time");
    assert_eq!(
        &b[24..28],
        &(1u32 << 31).to_le_bytes(),
        "mul: 0.5 ns per tick"
    );
    mem.read(0x3100, &mut b[..12]).unwrap();
    assert_eq!(&b[4..8], &1_700_000_000u32.to_le_bytes());
    // A re-scaled host clock reaches the guest.
    let rescaled = HostClock {
        tsc: 9_000,
        ns: 3_001_000,
        ns_per_tsc_fp: 1 << 30,
        generation: 1,
        ..host
    };
    vm.set_host_clock(rescaled, &mut mem);
    let info = vm.kvm_clock().time_info().unwrap();
    assert_eq!((info.tsc_timestamp, info.system_time), (9_000, 3_001_000));
    // A bad address: ignored, the guest goes on.
    assert_eq!(
        wrmsr(&mut vm, &mut st, &mut mem, system_time, u64::MAX),
        ExitAction::Resume
    );
    assert_eq!(vm.kvm_clock().time_info(), None);
}
