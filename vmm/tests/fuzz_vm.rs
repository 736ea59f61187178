//! Fuzz targets for the VM as the guest drives it: the legacy ports (PIC,
//! PIT, UART, CMOS, i8042, PCI, POST) and whole VM-exit sequences through
//! `Vm::handle_exit` (port I/O, MMIO through the decoder into a virtio
//! console, CPUID, MSRs, HLT). Budget and replay: `tests/fuzz_driver.rs`.

#[path = "../../tests/fuzz_driver.rs"]
mod driver;
#[path = "../../tests/fuzz_alloc.rs"]
mod fuzz_alloc;
mod inputs;

use arbitrary::Arbitrary;
use driver::Seq;
use inputs::host_cpuid;
use inputs::repeated;
use inputs::Offset;
use inputs::Port;
use inputs::Value;
use starina_vmm::cpuid::CpuidPolicy;
use starina_vmm::exit::Access;
use starina_vmm::exit::VcpuState;
use starina_vmm::exit::VmExit;
use starina_vmm::memory::GuestMemory;
use starina_vmm::memory::VecMemory;
use starina_vmm::serial;
use starina_vmm::virtio::console::Console;
use starina_vmm::vm::ExitContext;
use starina_vmm::vm::Vm;

#[derive(Arbitrary, Debug)]
enum PortOp {
    In {
        port: Port,
        size: u8,
    },
    Out {
        port: Port,
        size: u8,
        value: u32,
    },
    /// Time passes (ns, up to ~4 s).
    Wait(u32),
    UpdateIrqs,
    Acknowledge,
    SerialInput([u8; 8], u8),
    TakeLines,
}

fn port_op(vm: &mut Vm, op: PortOp, now: &mut u64) {
    match op {
        PortOp::In { port, size } => {
            let v = vm.io_in(port.get(), size, *now);
            if size == 1 {
                assert!(v <= 0xff, "a byte read gave {v:#x}");
            }
        }
        PortOp::Out { port, size, value } => {
            let _ = vm.io_out(port.get(), size, value, *now);
        }
        PortOp::Wait(ns) => *now = now.saturating_add(ns as u64),
        PortOp::UpdateIrqs => vm.update_irqs(*now),
        PortOp::Acknowledge => {
            let _ = (vm.pending_interrupt(), vm.acknowledge_interrupt());
            let _ = vm.next_deadline_ns();
        }
        PortOp::SerialInput(bytes, reps) => {
            let data = repeated(bytes, reps);
            let n = vm.serial_mut().push_input(&data);
            assert!(n <= data.len());
        }
        PortOp::TakeLines => {
            let lines: Vec<String> = vm.serial_mut().take_lines().collect();
            assert!(
                lines.len() <= serial::MAX_QUEUED_LINES,
                "{} lines",
                lines.len()
            );
            for line in lines {
                assert!(
                    line.len() <= 4 * serial::MAX_LINE,
                    "a {}-byte line",
                    line.len()
                );
            }
        }
    }
}

fn check_ports((start_ns, ops): (u32, Seq<PortOp>)) {
    let mut vm = Vm::new(
        CpuidPolicy::default(),
        host_cpuid,
        1_700_000_000,
        start_ns as u64,
    );
    let mut now = start_ns as u64;
    for op in ops.0 {
        port_op(&mut vm, op, &mut now);
    }
    assert!(vm.serial().partial_line().len() <= serial::MAX_LINE);
}

#[test]
fn fuzz_legacy_ports() {
    driver::run("vmm::ports", 2000, check_ports);
}

/// Guest RAM for whole-VM exits: 1 MiB, page tables where the fuzzer puts
/// them; the virtio windows sit above it.
const VM_RAM: usize = 1 << 20;

#[derive(Arbitrary, Debug)]
enum ExitOp {
    Io {
        port: Port,
        size: u8,
        write: bool,
        value: u32,
        string: bool,
    },
    /// An MMIO access at `offset` into virtio window `window` (or anywhere).
    Mmio {
        window: Option<u8>,
        offset: Offset,
        gpa: u64,
        insn: [u8; 15],
        insn_len: u8,
        /// Makes the bytes a MOV the decoder takes: (opcode, ModRM with
        /// mod 00, i.e. through a register).
        mov: Option<(u8, u8)>,
    },
    Cpuid {
        leaf: u32,
        subleaf: u32,
    },
    Msr {
        write: bool,
        index: u32,
        value: u64,
    },
    Hlt,
    Vmmcall,
    Exception {
        vector: u8,
        error_code: Option<u32>,
    },
    Unknown(u64),
    /// The guest changes its state between exits.
    State {
        cr0: u64,
        cr3: u16,
        cr4: u64,
        efer: u64,
        rip: u64,
        cs_attrib: u16,
    },
    Poke {
        at: u32,
        value: u64,
    },
    ConsoleInput([u8; 8], u8),
    Wait(u32),
    /// A register gets a value (what the next MOV stores).
    SetReg(u8, Value),
}

fn exit_of(op: &ExitOp, vm: &Vm, rip: u64) -> Option<VmExit> {
    Some(match *op {
        ExitOp::Io {
            port,
            size,
            write,
            value,
            string,
        } => VmExit::Io {
            port: port.get(),
            size,
            access: if write { Access::Write } else { Access::Read },
            value,
            string,
            rep: false,
            next_rip: rip.wrapping_add(1),
        },
        ExitOp::Mmio {
            window,
            offset,
            gpa,
            mut insn,
            mut insn_len,
            mov,
        } => {
            if let Some((opcode, modrm)) = mov {
                insn[0] = [0x89, 0x8b, 0x88, 0x8a, 0xc7, 0xc6][opcode as usize % 6];
                insn[1] = modrm & 0x3f;
                insn_len = insn_len.max(2);
            }
            let windows = vm.virtio_devices();
            let gpa = match window {
                Some(w) if !windows.is_empty() => {
                    windows[w as usize % windows.len()].base + offset.get() % 0x1000
                }
                _ => gpa,
            };
            VmExit::NestedPageFault {
                gpa,
                access: Access::Write,
                fetch: false,
                insn_bytes: insn,
                insn_len,
            }
        }
        ExitOp::Cpuid { leaf, subleaf } => VmExit::Cpuid { leaf, subleaf },
        ExitOp::Msr {
            write,
            index,
            value,
        } => VmExit::Msr {
            access: if write { Access::Write } else { Access::Read },
            index,
            value,
        },
        ExitOp::Hlt => VmExit::Hlt,
        ExitOp::Vmmcall => VmExit::Vmmcall,
        ExitOp::Exception { vector, error_code } => VmExit::Exception { vector, error_code },
        ExitOp::Unknown(code) => VmExit::Unknown { code },
        _ => return None,
    })
}

fn check_exits((gprs, ops): ([u64; 16], Seq<ExitOp>)) {
    let mut vm = Vm::new(CpuidPolicy::default(), host_cpuid, 1_700_000_000, 0);
    let slot = vm.add_virtio(Console::new()).expect("one console fits");
    let mut mem = VecMemory::new(VM_RAM);
    let mut st = VcpuState {
        gprs,
        ..Default::default()
    };
    let mut now = 0u64;
    for op in ops.iter() {
        if let Some(exit) = exit_of(op, &vm, st.rip) {
            let ctx = ExitContext {
                now_ns: now,
                host_tsc: now,
                vcpu: 0,
            };
            let _ = vm.handle_exit(&exit, &mut st, &mut mem, ctx);
            continue;
        }
        match *op {
            ExitOp::State {
                cr0,
                cr3,
                cr4,
                efer,
                rip,
                cs_attrib,
            } => {
                (st.cr0, st.cr3, st.cr4, st.efer, st.rip) = (cr0, cr3 as u64 * 16, cr4, efer, rip);
                st.cs.attrib = cs_attrib;
            }
            ExitOp::Poke { at, value } => {
                let _ = mem.write_u64(at as u64 % VM_RAM as u64, value);
            }
            ExitOp::ConsoleInput(bytes, reps) => {
                let data = repeated(bytes, reps);
                let _ = vm.virtio_device_mut(slot).map(|c| c.push_rx(&data));
                let _ = vm.poll_virtio(slot, &mut mem, now);
            }
            ExitOp::Wait(ns) => now = now.saturating_add(ns as u64),
            ExitOp::SetReg(r, v) => st.gprs[r as usize % 16] = v.get() as u64,
            _ => unreachable!("exit_of covers the exits"),
        }
    }
}

#[test]
fn fuzz_vm_exits() {
    driver::Target::new("vmm::vm_exits", 1000)
        .max_input(8192)
        .run(check_exits);
}
