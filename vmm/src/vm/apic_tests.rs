//! Host tests of the APIC platform through `handle_exit`: MSR exits to
//! the right vCPU's local APIC, IPIs between vCPUs, device lines through
//! the I/O APIC, and what a misbehaving guest gets.

use super::tests::vm;
use super::*;
use crate::exit::cr;
use crate::exit::Access;
use crate::exit::Gpr;
use crate::exit::VcpuState;
use crate::exit::VmExit;
use crate::ioapic::IOAPIC_BASE;
use crate::memory::VecMemory;
use crate::smp::Kicks;
use crate::smp::RunState;

fn ctx(vcpu: usize) -> ExitContext {
    ExitContext {
        now_ns: 1000,
        host_tsc: 0,
        vcpu,
    }
}

fn wrmsr(vm: &mut Vm, mem: &mut VecMemory, cpu: usize, index: u32, value: u64) -> ExitAction {
    let mut st = VcpuState::default();
    let exit = VmExit::Msr {
        access: Access::Write,
        index,
        value,
    };
    vm.handle_exit(&exit, &mut st, mem, ctx(cpu)).unwrap()
}

fn rdmsr(vm: &mut Vm, mem: &mut VecMemory, cpu: usize, index: u32) -> Option<u64> {
    let mut st = VcpuState::default();
    let exit = VmExit::Msr {
        access: Access::Read,
        index,
        value: 0,
    };
    match vm.handle_exit(&exit, &mut st, mem, ctx(cpu)).unwrap() {
        ExitAction::Resume => Some(st.gpr(Gpr::Rax) | (st.gpr(Gpr::Rdx) << 32)),
        _ => None,
    }
}

fn two_cpus() -> (Vm, VecMemory) {
    let mut mem = VecMemory::new(2 << 20);
    let mut vm = vm();
    vm.enable_apic(2, &mut mem).unwrap();
    for cpu in 0..2 {
        wrmsr(&mut vm, &mut mem, cpu, 0x80f, 0x1ff);
    }
    (vm, mem)
}

#[test]
fn each_vcpu_has_its_own_apic_and_the_mp_table_is_written() {
    let (mut vm, mut mem) = two_cpus();
    assert_eq!(vm.vcpu_count(), 2);
    assert_eq!(rdmsr(&mut vm, &mut mem, 0, 0x802), Some(0));
    assert_eq!(rdmsr(&mut vm, &mut mem, 1, 0x802), Some(1));
    let base = rdmsr(&mut vm, &mut mem, 1, 0x1b).unwrap();
    assert_eq!(base & (1 << 8), 0, "vCPU 1 is no BSP");
    assert_eq!(
        &mem.as_slice()[crate::mptable::MPTABLE_ADDR as usize..][..4],
        b"_MP_"
    );
    let mut st = VcpuState::default();
    vm.handle_exit(
        &VmExit::Cpuid {
            leaf: 1,
            subleaf: 0,
        },
        &mut st,
        &mut mem,
        ctx(1),
    )
    .unwrap();
    assert_eq!(st.gpr(Gpr::Rbx) >> 24, 1, "initial APIC ID");
    assert_ne!(st.gpr(Gpr::Rcx) & (1 << 21), 0, "x2APIC");
}

#[test]
fn an_ipi_reaches_the_other_vcpu_and_kicks_it() {
    let (mut vm, mut mem) = two_cpus();
    assert_eq!(vm.take_kicks(), Kicks(0));
    wrmsr(&mut vm, &mut mem, 0, 0x830, (1u64 << 32) | 0xfd);
    assert_eq!(vm.take_kicks(), Kicks(0b10));
    assert_eq!(vm.pending_interrupt_on(1), Some(0xfd));
    assert_eq!(vm.pending_interrupt_on(0), None);
    assert_eq!(vm.acknowledge_interrupt_on(1), Some(0xfd));
    // A halted vCPU with an interrupt waiting resumes.
    wrmsr(&mut vm, &mut mem, 0, 0x830, (1u64 << 32) | 0xfc);
    let mut st = VcpuState {
        rflags: cr::RFLAGS_IF | 2,
        ..Default::default()
    };
    let halted = vm
        .handle_exit(&VmExit::Hlt, &mut st, &mut mem, ctx(1))
        .unwrap();
    assert_eq!(
        halted,
        ExitAction::Halt,
        "0xfc waits behind 0xfd in service"
    );
    wrmsr(&mut vm, &mut mem, 1, 0x80b, 0);
    let resumed = vm
        .handle_exit(&VmExit::Hlt, &mut st, &mut mem, ctx(1))
        .unwrap();
    assert_eq!(resumed, ExitAction::Resume);
}

#[test]
fn init_and_sipi_start_the_ap_once() {
    let (mut vm, mut mem) = two_cpus();
    wrmsr(&mut vm, &mut mem, 0, 0x830, (1u64 << 32) | 0x4500);
    wrmsr(&mut vm, &mut mem, 0, 0x830, (1u64 << 32) | 0x4609);
    wrmsr(&mut vm, &mut mem, 0, 0x830, (1u64 << 32) | 0x4609);
    let cpus = vm.cpus_mut().unwrap();
    assert_eq!(cpus.take_start(1), Some(9));
    assert_eq!(cpus.take_start(1), None);
    assert_eq!(cpus.state(1), RunState::Running);
}

#[test]
fn bad_apic_accesses_get_gp_and_missing_targets_nothing() {
    let (mut vm, mut mem) = two_cpus();
    let gp = ExitAction::InjectException {
        vector: GP_VECTOR,
        error_code: Some(0),
    };
    assert_eq!(wrmsr(&mut vm, &mut mem, 0, 0x802, 7), gp, "ID is read-only");
    assert_eq!(
        wrmsr(&mut vm, &mut mem, 0, 0x1b, 0xfee0_0800),
        gp,
        "xAPIC mode"
    );
    assert_eq!(rdmsr(&mut vm, &mut mem, 0, 0x8ff), None);
    for _ in 0..10_000 {
        wrmsr(&mut vm, &mut mem, 0, 0x830, (7u64 << 32) | 0x40);
        wrmsr(&mut vm, &mut mem, 1, 0x830, (0xfffe_u64 << 32) | 0x4500);
    }
    assert_eq!(vm.take_kicks(), Kicks(0));
    assert_eq!(vm.pending_interrupt_on(0), None);
}

#[test]
fn device_lines_go_through_the_io_apic() {
    let (mut vm, mut mem) = two_cpus();
    // Pin 4 (COM1) to vCPU 1, vector 0x24, edge.
    vm.mmio_write(IOAPIC_BASE, &0x19u32.to_le_bytes(), &mut mem);
    vm.mmio_write(IOAPIC_BASE + 0x10, &(1u32 << 24).to_le_bytes(), &mut mem);
    vm.mmio_write(IOAPIC_BASE, &0x18u32.to_le_bytes(), &mut mem);
    vm.mmio_write(IOAPIC_BASE + 0x10, &0x24u32.to_le_bytes(), &mut mem);
    let mut back = [0u8; 4];
    vm.mmio_read(IOAPIC_BASE + 0x10, &mut back);
    assert_eq!(u32::from_le_bytes(back), 0x24);
    vm.ioapic_line(4, true);
    assert_eq!(vm.take_kicks(), Kicks(0b10));
    assert_eq!(vm.pending_interrupt_on(1), Some(0x24));
}
