//! Fuzz targets for the device models the guest drives: virtqueues,
//! virtio-mmio register sequences, the legacy ports (PIC, PIT, UART, CMOS,
//! i8042) and whole VM-exit sequences through `Vm::handle_exit`. Budget and
//! replay: `tests/fuzz_driver.rs`.

#[path = "../../tests/fuzz_driver.rs"]
mod driver;
#[path = "../../tests/fuzz_alloc.rs"]
mod fuzz_alloc;

use arbitrary::Arbitrary;
use driver::Seq;
use starina_vmm::cpuid::CpuidPolicy;
use starina_vmm::cpuid::CpuidResult;
use starina_vmm::exit::Access;
use starina_vmm::exit::VcpuState;
use starina_vmm::exit::VmExit;
use starina_vmm::memory::GuestMemory;
use starina_vmm::memory::VecMemory;
use starina_vmm::serial;
use starina_vmm::virtio::console;
use starina_vmm::virtio::console::Console;
use starina_vmm::virtio::mmio::reg;
use starina_vmm::virtio::mmio::MmioTransport;
use starina_vmm::virtio::queue::Virtqueue;
use starina_vmm::virtio::queue::MAX_INDIRECT_DESCRIPTORS;
use starina_vmm::vm::ExitContext;
use starina_vmm::vm::Vm;

/// Guest RAM for the device targets: small, so random addresses hit it.
const RAM: usize = 64 << 10;

/// A guest-physical address: usually inside the small RAM, sometimes any.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Ram(u16),
    Any(u64),
}

impl Addr {
    fn get(self) -> u64 {
        match self {
            Addr::Ram(a) => a as u64 % RAM as u64,
            Addr::Any(a) => a,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum QueueOp {
    Pop,
    UndoPop,
    AddUsed {
        head: u16,
        len: u32,
    },
    HasAvailable,
    TakeInterrupt,
    ReadInto {
        max: u16,
    },
    WriteFrom {
        len: u16,
    },
    Poke {
        at: u16,
        value: u64,
    },
    /// The driver writes descriptor `index` (mod the queue size, or any
    /// when the index is past 255 in the table).
    Desc {
        index: u16,
        addr: Addr,
        len: u32,
        flags: u16,
        next: u16,
    },
    /// The driver puts `head` in available slot `slot` and bumps the index
    /// by `bump` (0: leaves it).
    Avail {
        slot: u16,
        head: u16,
        bump: u8,
    },
}

/// Where the rings are: a sane layout (with a size and addresses that
/// validate, so operations reach the chains), or anything.
#[derive(Arbitrary, Debug)]
enum Layout {
    Sane {
        size_log2: u8,
    },
    Any {
        max_size: u16,
        size: u16,
        desc: Addr,
        avail: Addr,
        used: Addr,
    },
}

#[derive(Arbitrary, Debug)]
struct QueueInput {
    layout: Layout,
    ops: Seq<QueueOp>,
}

fn queue_of(layout: &Layout) -> Virtqueue {
    match *layout {
        Layout::Sane { size_log2 } => {
            let mut q = Virtqueue::new(256);
            q.size = 1 << (size_log2 % 9);
            (q.desc_addr, q.avail_addr, q.used_addr) = (0x1000, 0x2000, 0x3000);
            q
        }
        Layout::Any {
            max_size,
            size,
            desc,
            avail,
            used,
        } => {
            let mut q = Virtqueue::new(max_size);
            q.size = size;
            (q.desc_addr, q.avail_addr, q.used_addr) = (desc.get(), avail.get(), used.get());
            q
        }
    }
}

/// The driver's side of a descriptor or available-ring write.
fn driver_write(mem: &mut VecMemory, q: &Virtqueue, op: &QueueOp) {
    let size = q.size.max(1) as u64;
    match *op {
        QueueOp::Desc {
            index,
            addr,
            len,
            flags,
            next,
        } => {
            let at = q.desc_addr.wrapping_add(16 * (index as u64 % size));
            let _ = mem.write_u64(at, addr.get());
            let _ = mem.write_u32(at.wrapping_add(8), len);
            let _ = mem.write_u16(at.wrapping_add(12), flags);
            let _ = mem.write_u16(at.wrapping_add(14), next);
        }
        QueueOp::Avail { slot, head, bump } => {
            let at = q.avail_addr.wrapping_add(4 + 2 * (slot as u64 % size));
            let _ = mem.write_u16(at, head);
            if bump > 0 {
                let idx_at = q.avail_addr.wrapping_add(2);
                let idx = mem.read_u16(idx_at).unwrap_or(0);
                let _ = mem.write_u16(idx_at, idx.wrapping_add(bump as u16 % 4));
            }
        }
        _ => {}
    }
}

fn poke(mem: &mut VecMemory, at: u16, value: u64) {
    let at = (at as u64 % RAM as u64) & !7;
    mem.write_u64(at, value).expect("inside RAM");
}

fn check_queue(input: QueueInput) {
    let mut mem = VecMemory::new(RAM);
    let mut q = queue_of(&input.layout);
    // The transport sets `ready` only after `validate`: so does this.
    q.ready = q.validate(&mem).is_ok();
    let mut last = None;
    let bound = q.size as usize + MAX_INDIRECT_DESCRIPTORS as usize;
    for op in input.ops.0 {
        match op {
            QueueOp::Pop => {
                if let Ok(Some(chain)) = q.pop(&mem) {
                    assert!(
                        chain.descriptors.len() <= bound,
                        "{} descriptors",
                        chain.descriptors.len()
                    );
                    for d in &chain.descriptors {
                        assert!(mem.contains(d.addr, d.len as u64), "{d:?} outside RAM");
                    }
                    last = Some(chain);
                }
            }
            QueueOp::UndoPop => q.undo_pop(),
            QueueOp::AddUsed { head, len } => {
                let _ = q.add_used(&mut mem, head, len);
            }
            QueueOp::HasAvailable => {
                let _ = q.has_available(&mem);
            }
            QueueOp::TakeInterrupt => {
                let _ = q.take_interrupt_needed(&mem);
            }
            QueueOp::ReadInto { max } => {
                let Some(chain) = &last else { continue };
                let mut out = Vec::new();
                if chain.read_into(&mem, &mut out, max as usize).is_ok() {
                    assert_eq!(out.len() as u64, chain.readable_len());
                }
            }
            QueueOp::WriteFrom { len } => {
                let Some(chain) = &last else { continue };
                let data = vec![0x5a; len as usize];
                if let Ok(n) = chain.write_from(&mut mem, &data) {
                    assert!(n as u64 <= chain.writable_len().min(len as u64));
                }
            }
            QueueOp::Poke { at, value } => poke(&mut mem, at, value),
            QueueOp::Desc { .. } | QueueOp::Avail { .. } => driver_write(&mut mem, &q, &op),
        }
    }
}

#[test]
fn fuzz_virtqueue() {
    driver::run("vmm::virtqueue", 2000, check_queue);
}

/// The transport's registers, so that sequences reach deep states.
const REGS: [u64; 25] = [
    reg::MAGIC,
    reg::VERSION,
    reg::DEVICE_ID,
    reg::DEVICE_FEATURES,
    reg::DEVICE_FEATURES_SEL,
    reg::DRIVER_FEATURES,
    reg::DRIVER_FEATURES_SEL,
    reg::QUEUE_SEL,
    reg::QUEUE_NUM_MAX,
    reg::QUEUE_NUM,
    reg::QUEUE_READY,
    reg::QUEUE_NOTIFY,
    reg::INTERRUPT_STATUS,
    reg::INTERRUPT_ACK,
    reg::STATUS,
    reg::QUEUE_DESC_LOW,
    reg::QUEUE_DESC_HIGH,
    reg::QUEUE_DRIVER_LOW,
    reg::QUEUE_DRIVER_HIGH,
    reg::QUEUE_DEVICE_LOW,
    reg::QUEUE_DEVICE_HIGH,
    reg::SHM_SEL,
    reg::CONFIG_GENERATION,
    reg::CONFIG,
    reg::CONFIG + 4,
];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Offset {
    Reg(u8),
    Any(u16),
}

impl Offset {
    fn get(self) -> u64 {
        match self {
            Offset::Reg(i) => REGS[i as usize % REGS.len()],
            Offset::Any(o) => o as u64,
        }
    }
}

/// A register value: usually small (queue numbers, status bits, RAM
/// addresses), sometimes any.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Value {
    Small(u8),
    Ram(u16),
    Any(u32),
}

impl Value {
    fn get(self) -> u32 {
        match self {
            Value::Small(v) => v as u32,
            Value::Ram(v) => v as u32 % RAM as u32,
            Value::Any(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum MmioOp {
    Read {
        offset: Offset,
        width: u8,
    },
    Write {
        offset: Offset,
        width: u8,
        value: Value,
    },
    Poke {
        at: u16,
        value: u64,
    },
    /// The driver's whole start-up (status, features, every queue at a
    /// sane place with 2^n entries, DRIVER_OK), as Linux does it.
    Start {
        size_log2: u8,
    },
    /// The driver writes descriptor `index` of queue 0 or 1, makes it
    /// available in the next slot, and kicks the queue if `notify`.
    Buffer {
        queue: bool,
        index: u8,
        addr: Addr,
        len: u16,
        flags: u8,
        next: u8,
        notify: bool,
    },
    /// Host console input: these bytes, repeated.
    PushRx([u8; 8], u8),
    TakeTx,
    Poll,
    ConfigChange,
}

/// Input bytes for a device: a short pattern repeated (inputs built from
/// one `Vec` each would swallow the rest of the fuzz input).
fn repeated(bytes: [u8; 8], reps: u8) -> Vec<u8> {
    bytes.repeat(1 + reps as usize)
}

fn width(w: u8) -> usize {
    [4, 4, 4, 1, 2, 8, 0, 3][w as usize % 8]
}

/// Queue `index` of a started console: its rings at fixed places in RAM.
fn sane_queue(index: u16, size: u16) -> Virtqueue {
    let base = 0x1000 + 0x3000 * index as u64;
    let mut q = Virtqueue::new(size);
    (q.desc_addr, q.avail_addr, q.used_addr) = (base, base + 0x1000, base + 0x2000);
    q
}

fn start_driver(t: &mut MmioTransport<Console>, mem: &mut VecMemory, size_log2: u8) {
    let mut w = |offset: u64, v: u32| {
        let _ = t.write(offset, &v.to_le_bytes(), mem);
    };
    w(reg::STATUS, 0);
    w(reg::STATUS, 1 | 2);
    w(reg::DRIVER_FEATURES_SEL, 1);
    w(reg::DRIVER_FEATURES, 1); // VIRTIO_F_VERSION_1
    w(reg::STATUS, 1 | 2 | 8);
    for index in 0..2u16 {
        let q = sane_queue(index, 1 << (size_log2 % 4));
        w(reg::QUEUE_SEL, index as u32);
        w(reg::QUEUE_NUM, q.max_size as u32);
        w(reg::QUEUE_DESC_LOW, q.desc_addr as u32);
        w(reg::QUEUE_DRIVER_LOW, q.avail_addr as u32);
        w(reg::QUEUE_DEVICE_LOW, q.used_addr as u32);
        w(reg::QUEUE_READY, 1);
    }
    w(reg::STATUS, 1 | 2 | 8 | 4);
}

fn check_mmio(ops: Seq<MmioOp>) {
    let mut mem = VecMemory::new(RAM);
    let mut t = MmioTransport::new(Console::new());
    for op in ops.0 {
        match op {
            MmioOp::Read { offset, width: w } => {
                let mut data = vec![0u8; width(w)];
                let _ = t.read(offset.get(), &mut data);
            }
            MmioOp::Write {
                offset,
                width: w,
                value,
            } => {
                let bytes = (value.get() as u64).to_le_bytes();
                let _ = t.write(offset.get(), &bytes[..width(w)], &mut mem);
            }
            MmioOp::Poke { at, value } => poke(&mut mem, at, value),
            MmioOp::Start { size_log2 } => start_driver(&mut t, &mut mem, size_log2),
            MmioOp::Buffer {
                queue,
                index,
                addr,
                len,
                flags,
                next,
                notify,
            } => {
                let q = sane_queue(queue as u16, 8);
                let (index, next) = (index as u16 % 8, next as u16 % 8);
                let desc = QueueOp::Desc {
                    index,
                    addr,
                    len: len as u32,
                    flags: flags as u16 & 7,
                    next,
                };
                driver_write(&mut mem, &q, &desc);
                let slot = mem.read_u16(q.avail_addr + 2).unwrap_or(0);
                driver_write(
                    &mut mem,
                    &q,
                    &QueueOp::Avail {
                        slot,
                        head: index,
                        bump: 1,
                    },
                );
                if notify {
                    let _ = t.write(reg::QUEUE_NOTIFY, &(queue as u32).to_le_bytes(), &mut mem);
                }
            }
            MmioOp::PushRx(bytes, reps) => {
                let data = repeated(bytes, reps);
                let n = t.device_mut().push_rx(&data);
                assert!(n <= data.len());
                t.poll(&mut mem);
            }
            MmioOp::TakeTx => assert!(t.device_mut().take_tx().len() <= console::TX_CAPACITY),
            MmioOp::Poll => t.poll(&mut mem),
            MmioOp::ConfigChange => t.notify_config_change(),
        }
        assert!(t.device().rx_pending() <= console::RX_CAPACITY);
        let _ = (t.irq_level(), t.status(), t.take_error());
    }
}

#[test]
fn fuzz_virtio_mmio_registers() {
    driver::run("vmm::virtio_mmio", 2000, check_mmio);
}

/// The legacy ports the VM claims, and any other.
const PORTS: [u16; 28] = [
    0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, // PIC, ELCR
    0x40, 0x41, 0x42, 0x43, 0x61, // PIT, port B
    0x70, 0x71, // CMOS
    0x60, 0x64, // i8042
    0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff, // COM1
    0xcf8, 0xcfc, 0xcff, // PCI config
    0x80, 0x2f8, // POST, nothing
];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Port {
    Known(u8),
    Any(u16),
}

impl Port {
    fn get(self) -> u16 {
        match self {
            Port::Known(i) => PORTS[i as usize % PORTS.len()],
            Port::Any(p) => p,
        }
    }
}

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

fn host_cpuid(_: u32, _: u32) -> CpuidResult {
    CpuidResult {
        eax: 0x8000_0008,
        ebx: 0,
        ecx: 0,
        edx: 0,
    }
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
