//! Fuzz targets for the virtio devices the guest drives: virtqueues
//! directly, and virtio-mmio register sequences (with the driver's start-up
//! and buffers) on a console, a network device and a disk. Budget and replay:
//! `tests/fuzz_driver.rs`.

#[path = "../../tests/fuzz_driver.rs"]
mod driver;
#[path = "../../tests/fuzz_alloc.rs"]
mod fuzz_alloc;
mod inputs;

use arbitrary::Arbitrary;
use driver::Seq;
use inputs::repeated;
use inputs::Addr;
use inputs::Offset;
use inputs::Value;
use inputs::RAM;
use starina_vmm::memory::GuestMemory;
use starina_vmm::memory::VecMemory;
use starina_vmm::virtio::blk;
use starina_vmm::virtio::blk::Blk;
use starina_vmm::virtio::console;
use starina_vmm::virtio::console::Console;
use starina_vmm::virtio::mmio::reg;
use starina_vmm::virtio::mmio::MmioTransport;
use starina_vmm::virtio::net;
use starina_vmm::virtio::net::Net;
use starina_vmm::virtio::queue::Virtqueue;
use starina_vmm::virtio::queue::MAX_INDIRECT_DESCRIPTORS;
use starina_vmm::virtio::DeviceError;
use starina_vmm::virtio::VirtioDevice;

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
    /// Host input (console bytes, a network frame): these bytes, repeated.
    PushRx([u8; 8], u8),
    TakeTx,
    Poll,
    ConfigChange,
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

/// A device under the register fuzzer: its host side, and the bounds that
/// hold whatever the guest does.
trait Fuzzed: VirtioDevice {
    fn fresh() -> Self;
    fn push_input(&mut self, data: Vec<u8>);
    fn take_output(&mut self);
    fn check_bounds(&self);
    /// The host side answers what it was asked (a disk's backend).
    fn answer(&mut self, _mem: &mut VecMemory) {}
}

impl Fuzzed for Console {
    fn fresh() -> Self {
        Console::new()
    }
    fn push_input(&mut self, data: Vec<u8>) {
        let n = self.push_rx(&data);
        assert!(n <= data.len());
    }
    fn take_output(&mut self) {
        assert!(self.take_tx().len() <= console::TX_CAPACITY);
    }
    fn check_bounds(&self) {
        assert!(self.rx_pending() <= console::RX_CAPACITY);
    }
}

impl Fuzzed for Net {
    fn fresh() -> Self {
        Net::new([0x52, 0x54, 0, 0, 0, 1])
    }
    fn push_input(&mut self, data: Vec<u8>) {
        let dropped = self.stats().rx_dropped;
        let accepted = self.push_rx(data);
        assert_eq!(self.stats().rx_dropped, dropped + u64::from(!accepted));
    }
    fn take_output(&mut self) {
        let frames = self.take_tx();
        assert!(frames.len() <= net::TX_BACKLOG_FRAMES);
        assert!(frames.iter().map(Vec::len).sum::<usize>() <= net::TX_BACKLOG_BYTES);
        for f in &frames {
            assert!((net::ETHERNET_HEADER_LEN..=net::MAX_FRAME).contains(&f.len()));
        }
    }
    fn check_bounds(&self) {
        assert!(self.rx_backlog() <= net::RX_BACKLOG_FRAMES);
    }
}

/// A disk whose backend takes every operation and answers them when
/// asked: reads with their sectors, every third operation with an error.
struct FuzzBlk {
    blk: Blk,
    /// (id, sectors) of the operations out.
    out: std::sync::Arc<std::sync::Mutex<Vec<(u32, u32)>>>,
}

struct Taker(std::sync::Arc<std::sync::Mutex<Vec<(u32, u32)>>>);

impl blk::BlockBackend for Taker {
    fn read(&mut self, id: u32, _sector: u64, count: u32) -> Result<(), blk::Refusal> {
        self.0.lock().unwrap().push((id, count));
        Ok(())
    }
    fn write(
        &mut self,
        id: u32,
        _sector: u64,
        count: u32,
        fill: &mut dyn FnMut(&mut [u8]) -> bool,
    ) -> Result<(), blk::Refusal> {
        assert!(count > 0);
        let mut data = vec![0u8; count as usize * blk::SECTOR_SIZE];
        if !fill(&mut data) {
            return Err(blk::Refusal::Failed);
        }
        self.0.lock().unwrap().push((id, 0));
        Ok(())
    }
    fn flush(&mut self, id: u32) -> Result<(), blk::Refusal> {
        self.0.lock().unwrap().push((id, 0));
        Ok(())
    }
}

impl VirtioDevice for FuzzBlk {
    fn device_id(&self) -> u32 {
        self.blk.device_id()
    }
    fn features(&self) -> u64 {
        self.blk.features()
    }
    fn num_queues(&self) -> u16 {
        self.blk.num_queues()
    }
    fn queue_max_size(&self, index: u16) -> u16 {
        self.blk.queue_max_size(index)
    }
    fn config_len(&self) -> usize {
        self.blk.config_len()
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        self.blk.read_config(offset, data)
    }
    fn reset(&mut self) {
        self.blk.reset()
    }
    fn process(
        &mut self,
        queues: &mut [Virtqueue],
        mem: &mut dyn GuestMemory,
        notified: Option<u16>,
    ) -> Result<(), DeviceError> {
        self.blk.process(queues, mem, notified)
    }
}

impl Fuzzed for FuzzBlk {
    fn fresh() -> Self {
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let backend = Box::new(Taker(out.clone()));
        FuzzBlk {
            blk: Blk::new(64, false, 3, backend),
            out,
        }
    }
    fn push_input(&mut self, _data: Vec<u8>) {}
    fn take_output(&mut self) {}
    fn check_bounds(&self) {
        assert!(self.blk.ops_in_flight() <= blk::MAX_OPS_IN_FLIGHT);
    }
    fn answer(&mut self, mem: &mut VecMemory) {
        let out = std::mem::take(&mut *self.out.lock().unwrap());
        for (i, (id, count)) in out.into_iter().enumerate() {
            let data = vec![0xa5; count as usize * blk::SECTOR_SIZE];
            let result = if i % 3 == 2 { Err(()) } else { Ok(&data[..]) };
            self.blk.complete(mem, id, result);
        }
    }
}

fn start_driver<D: VirtioDevice>(t: &mut MmioTransport<D>, mem: &mut VecMemory, size_log2: u8) {
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

fn check_mmio<D: Fuzzed>(ops: Seq<MmioOp>) {
    let mut mem = VecMemory::new(RAM);
    let mut t = MmioTransport::new(D::fresh());
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
                t.device_mut().push_input(repeated(bytes, reps));
                t.poll(&mut mem);
            }
            MmioOp::TakeTx => t.device_mut().take_output(),
            MmioOp::Poll => {
                t.device_mut().answer(&mut mem);
                t.poll(&mut mem)
            }
            MmioOp::ConfigChange => t.notify_config_change(),
        }
        t.device().check_bounds();
        let _ = (t.irq_level(), t.status(), t.take_error());
    }
}

#[test]
fn fuzz_virtio_mmio_registers() {
    driver::run("vmm::virtio_mmio", 2000, check_mmio::<Console>);
}

#[test]
fn fuzz_virtio_net() {
    driver::run("vmm::virtio_net", 2000, check_mmio::<Net>);
}

#[test]
fn fuzz_virtio_blk() {
    driver::run("vmm::virtio_blk", 2000, check_mmio::<FuzzBlk>);
}
