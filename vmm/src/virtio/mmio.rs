//! The virtio-mmio transport, version 2 (virtio 1.x, section 4.2).
//!
//! One [`MmioTransport`] is one 4 KiB window with one device. The VMM routes
//! guest accesses at `[base, base + 0x1000)` here (after decoding the MMIO
//! instruction) with the offset into the window. Registers below 0x100 are
//! 32-bit only; config space at 0x100 accepts 1, 2, 4 and 8-byte accesses. A
//! bad access is an [`MmioError`] for the caller to log: reads of it should
//! return zero and writes be dropped, but nothing panics.

use alloc::vec::Vec;
use core::fmt;

use super::status;
use super::DeviceError;
use super::VirtioDevice;
use super::VIRTIO_F_VERSION_1;
use crate::memory::GuestMemory;
use crate::repeats::Repeats;
use crate::virtio::queue::Virtqueue;

/// "virt"
pub const MAGIC: u32 = 0x7472_6976;
pub const VERSION: u32 = 2;
/// What the device reports as its vendor: "SVMM" (Starina VMM).
pub const VENDOR_ID: u32 = 0x4d4d_5653;
/// Size of one device window.
pub const WINDOW_SIZE: u64 = 0x1000;

pub mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// Deferred used-buffer returns (see
/// [`VirtioDevice::interrupt_may_wait`]) after which the interrupt is raised
/// anyway: bounds what waits in the guest's ring.
pub const MAX_DEFERRED: u32 = 32;

/// Interrupt status bits.
pub const INT_USED_BUFFER: u32 = 1;
pub const INT_CONFIG_CHANGE: u32 = 2;

/// A guest access the transport could not honor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioError {
    /// Register accesses must be 4 bytes and aligned; config accesses 1, 2,
    /// 4 or 8.
    BadWidth { offset: u64, len: usize },
    /// Not a register, or past the config space.
    BadOffset { offset: u64, write: bool },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmioError::BadWidth { offset, len } => {
                write!(f, "{len}-byte access to virtio-mmio offset {offset:#x}")
            }
            MmioError::BadOffset { offset, write } => write!(
                f,
                "{} of virtio-mmio offset {offset:#x}, which is not a register",
                if *write { "write" } else { "read" }
            ),
        }
    }
}

/// One virtio-mmio device window.
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    queues: Vec<Virtqueue>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    interrupt_status: u32,
    /// Runs that returned buffers whose interrupt may wait, since the
    /// used-buffer interrupt was last raised.
    deferred: u32,
    config_generation: u32,
    /// Why the device last stopped, for the VMM's log.
    last_error: Option<DeviceError>,
    /// Times the guest broke the device: it can do so once per exit, so
    /// only a few are logged.
    failures: Repeats,
}

impl<D: VirtioDevice> MmioTransport<D> {
    pub fn new(device: D) -> Self {
        let queues = (0..device.num_queues())
            .map(|i| Virtqueue::new(device.queue_max_size(i)))
            .collect();
        Self {
            device,
            queues,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            interrupt_status: 0,
            deferred: 0,
            config_generation: 0,
            last_error: None,
            failures: Repeats::new(),
        }
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    /// The error that put the device into DEVICE_NEEDS_RESET, if any. Taking
    /// it lets the VMM log it once.
    pub fn take_error(&mut self) -> Option<DeviceError> {
        self.last_error.take()
    }

    /// Level of the device's interrupt line.
    pub fn irq_level(&self) -> bool {
        self.interrupt_status != 0
    }

    fn device_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn live(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::DEVICE_NEEDS_RESET == 0
    }

    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.interrupt_status = 0;
        self.deferred = 0;
    }

    /// The device broke on a guest error: stop it until the driver resets it.
    fn fail(&mut self, e: DeviceError) {
        if let Some(n) = self.failures.note() {
            log::warn!(
                "virtio device {}: {e}; needs reset (failure {n}; only the 2^k-th is logged)",
                self.device.device_id()
            );
        }
        self.last_error = Some(e);
        self.status |= status::DEVICE_NEEDS_RESET;
        self.interrupt_status |= INT_CONFIG_CHANGE;
    }

    fn selected_queue(&mut self) -> Option<&mut Virtqueue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Runs the device and raises the used-buffer interrupt if any queue
    /// returned buffers the driver wants to hear about (unless they may
    /// wait: [`VirtioDevice::interrupt_may_wait`]).
    fn run(&mut self, mem: &mut dyn GuestMemory, notified: Option<u16>) {
        if !self.live() {
            return;
        }
        if let Err(e) = self.device.process(&mut self.queues, mem, notified) {
            self.fail(e);
        }
        let mut irq = false;
        let mut waits = false;
        for (index, q) in self.queues.iter_mut().enumerate() {
            if q.take_interrupt_needed(mem) {
                if self.device.interrupt_may_wait(index as u16) {
                    waits = true;
                } else {
                    irq = true;
                }
            }
        }
        if waits {
            self.deferred += 1;
        }
        if irq || self.deferred >= MAX_DEFERRED {
            self.raise_used_buffer();
        }
    }

    /// Raises the used-buffer interrupt: the driver looks at every queue,
    /// so buffers whose interrupt was deferred are seen too.
    fn raise_used_buffer(&mut self) {
        self.interrupt_status |= INT_USED_BUFFER;
        self.deferred = 0;
    }

    /// Raises the interrupt that returned buffers were waiting for, if
    /// any: call when the guest halts (it may be waiting for them).
    pub fn raise_deferred(&mut self) {
        if self.deferred > 0 && self.live() {
            self.raise_used_buffer();
        }
    }

    /// Lets the device make progress on host-side events (e.g. console input
    /// was pushed). Call after feeding the device.
    pub fn poll(&mut self, mem: &mut dyn GuestMemory) {
        self.run(mem, None);
    }

    /// Guest read at `offset` into the window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), MmioError> {
        if offset >= reg::CONFIG {
            let len = data.len();
            return self.config_access(offset, len, false, |dev, at| dev.read_config(at, data));
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            return Err(MmioError::BadWidth {
                offset,
                len: data.len(),
            });
        }
        let q = self.queues.get(self.queue_sel as usize);
        let v: u32 = match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_id(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features() as u32,
                1 => (self.device_features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => q.map_or(0, |q| q.max_size as u32),
            reg::QUEUE_READY => q.map_or(0, |q| q.ready as u32),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => self.config_generation,
            // No shared memory regions: length all-ones means "absent".
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            _ => {
                return Err(MmioError::BadOffset {
                    offset,
                    write: false,
                })
            }
        };
        data.copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    /// Guest write at `offset` into the window. Queue notifications run the
    /// device right away, hence `mem`.
    pub fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), MmioError> {
        if offset >= reg::CONFIG {
            self.config_access(offset, data.len(), true, |dev, at| {
                dev.write_config(at, data)
            })?;
            return Ok(());
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return Err(MmioError::BadWidth {
                offset,
                len: data.len(),
            });
        };
        if !offset.is_multiple_of(4) {
            return Err(MmioError::BadWidth { offset, len: 4 });
        }
        let v = u32::from_le_bytes(bytes);
        let set_low = |old: u64| (old & !0xffff_ffff) | v as u64;
        let set_high = |old: u64| (old & 0xffff_ffff) | ((v as u64) << 32);
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES => {
                // Features are frozen once FEATURES_OK is set.
                if self.status & status::FEATURES_OK == 0 {
                    match self.driver_features_sel {
                        0 => self.driver_features = set_low(self.driver_features),
                        1 => self.driver_features = set_high(self.driver_features),
                        _ => {}
                    }
                }
            }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => {
                if let Some(q) = self.selected_queue() {
                    if !q.ready {
                        q.size = v.min(u16::MAX as u32) as u16;
                    }
                }
            }
            reg::QUEUE_READY => self.write_queue_ready(v, mem),
            reg::QUEUE_NOTIFY => {
                // The value is the queue index (no NOTIFICATION_DATA).
                let index = v & 0xffff;
                if (index as usize) < self.queues.len() {
                    self.run(mem, Some(index as u16));
                }
            }
            reg::INTERRUPT_ACK => self.interrupt_status &= !v,
            reg::STATUS => self.write_status(v),
            reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH => {
                if let Some(q) = self.selected_queue() {
                    // Addresses may only change while the queue is off.
                    if !q.ready {
                        let field = match offset & !4 {
                            reg::QUEUE_DESC_LOW => &mut q.desc_addr,
                            reg::QUEUE_DRIVER_LOW => &mut q.avail_addr,
                            _ => &mut q.used_addr,
                        };
                        *field = if offset & 4 == 0 {
                            set_low(*field)
                        } else {
                            set_high(*field)
                        };
                    }
                }
            }
            reg::SHM_SEL => {}
            _ => {
                return Err(MmioError::BadOffset {
                    offset,
                    write: true,
                })
            }
        }
        Ok(())
    }

    fn write_queue_ready(&mut self, v: u32, mem: &mut dyn GuestMemory) {
        let index = self.queue_sel as u16;
        let Some(q) = self.selected_queue() else {
            return;
        };
        if v == 0 {
            q.ready = false;
            return;
        }
        match q.validate(mem) {
            Ok(()) => q.ready = true,
            Err(error) => self.fail(DeviceError::Queue {
                queue: index,
                error,
            }),
        }
    }

    fn write_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        let mut new = v | (old & status::DEVICE_NEEDS_RESET);
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            // Accept only a subset of what we offered, including VERSION_1;
            // otherwise leave FEATURES_OK clear so the driver sees the refusal.
            let ok = self.driver_features & !self.device_features() == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                new &= !status::FEATURES_OK;
            }
        }
        self.status = new;
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            self.device.activate(self.driver_features);
        }
    }

    /// Checks a config access and hands the in-range offset to `f`.
    fn config_access(
        &mut self,
        offset: u64,
        len: usize,
        write: bool,
        f: impl FnOnce(&mut D, usize),
    ) -> Result<(), MmioError> {
        if !matches!(len, 1 | 2 | 4 | 8) {
            return Err(MmioError::BadWidth { offset, len });
        }
        let at = offset - reg::CONFIG;
        if at.saturating_add(len as u64) > self.device.config_len() as u64 {
            return Err(MmioError::BadOffset { offset, write });
        }
        f(&mut self.device, at as usize);
        Ok(())
    }

    /// Bumps the config generation and raises the config-change interrupt
    /// (after the device changed its config space).
    pub fn notify_config_change(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & status::DRIVER_OK != 0 {
            self.interrupt_status |= INT_CONFIG_CHANGE;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::VecMemory;
    use crate::virtio::queue::tests::Driver;
    use crate::virtio::queue::tests::AVAIL;
    use crate::virtio::queue::tests::DESC;
    use crate::virtio::queue::tests::USED;
    use crate::virtio::queue::QueueError;
    use crate::virtio::queue::VIRTQ_DESC_F_WRITE;

    /// Echoes queue 0's readable bytes into the same chain's writable part.
    pub(crate) struct Echo {
        pub resets: u32,
    }

    impl VirtioDevice for Echo {
        fn device_id(&self) -> u32 {
            42
        }
        fn features(&self) -> u64 {
            1 << 3
        }
        fn num_queues(&self) -> u16 {
            1
        }
        fn queue_max_size(&self, _: u16) -> u16 {
            8
        }
        fn config_len(&self) -> usize {
            8
        }
        fn read_config(&self, offset: usize, data: &mut [u8]) {
            let cfg = 0x0807_0605_0403_0201u64.to_le_bytes();
            data.copy_from_slice(&cfg[offset..offset + data.len()]);
        }
        fn reset(&mut self) {
            self.resets += 1;
        }
        fn process(
            &mut self,
            queues: &mut [Virtqueue],
            mem: &mut dyn GuestMemory,
            _notified: Option<u16>,
        ) -> Result<(), DeviceError> {
            let q = &mut queues[0];
            while let Some(c) = super::super::on_queue(0, q.pop(mem))? {
                let mut v = Vec::new();
                super::super::on_queue(0, c.read_into(mem, &mut v, 4096))?;
                let n = c.write_from(mem, &v)?;
                super::super::on_queue(0, q.add_used(mem, c.head, n as u32))?;
            }
            Ok(())
        }
    }

    pub(crate) fn r32<D: VirtioDevice>(t: &mut MmioTransport<D>, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    pub(crate) fn w32<D: VirtioDevice>(
        t: &mut MmioTransport<D>,
        mem: &mut VecMemory,
        off: u64,
        v: u32,
    ) {
        t.write(off, &v.to_le_bytes(), mem).unwrap();
    }

    /// Drives Linux's virtio-mmio probe sequence and sets up every queue at
    /// DESC/AVAIL/USED + 0x4000 * index with size 8.
    pub(crate) fn bring_up<D: VirtioDevice>(t: &mut MmioTransport<D>, mem: &mut VecMemory) {
        bring_up_refusing(t, mem, 0);
    }

    /// [`bring_up`], the driver accepting the offered features except
    /// those of `refused` (low 32 bits).
    pub(crate) fn bring_up_refusing<D: VirtioDevice>(
        t: &mut MmioTransport<D>,
        mem: &mut VecMemory,
        refused: u32,
    ) {
        assert_eq!(r32(t, reg::MAGIC), MAGIC);
        assert_eq!(r32(t, reg::VERSION), 2);
        w32(t, mem, reg::STATUS, 0);
        w32(t, mem, reg::STATUS, status::ACKNOWLEDGE);
        w32(t, mem, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w32(t, mem, reg::DEVICE_FEATURES_SEL, 1);
        let hi = r32(t, reg::DEVICE_FEATURES);
        assert_eq!(hi & 1, 1, "VERSION_1 offered");
        w32(t, mem, reg::DEVICE_FEATURES_SEL, 0);
        let lo = r32(t, reg::DEVICE_FEATURES);
        w32(t, mem, reg::DRIVER_FEATURES_SEL, 0);
        w32(t, mem, reg::DRIVER_FEATURES, lo & !refused);
        w32(t, mem, reg::DRIVER_FEATURES_SEL, 1);
        w32(t, mem, reg::DRIVER_FEATURES, 1);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        w32(t, mem, reg::STATUS, s);
        assert_eq!(
            r32(t, reg::STATUS) & status::FEATURES_OK,
            status::FEATURES_OK
        );
        for i in 0..t.queues.len() as u32 {
            let base = 0x4000 * i as u64;
            w32(t, mem, reg::QUEUE_SEL, i);
            assert_eq!(r32(t, reg::QUEUE_READY), 0);
            assert!(r32(t, reg::QUEUE_NUM_MAX) >= 8);
            w32(t, mem, reg::QUEUE_NUM, 8);
            w32(t, mem, reg::QUEUE_DESC_LOW, (DESC + base) as u32);
            w32(t, mem, reg::QUEUE_DESC_HIGH, 0);
            w32(t, mem, reg::QUEUE_DRIVER_LOW, (AVAIL + base) as u32);
            w32(t, mem, reg::QUEUE_DRIVER_HIGH, 0);
            w32(t, mem, reg::QUEUE_DEVICE_LOW, (USED + base) as u32);
            w32(t, mem, reg::QUEUE_DEVICE_HIGH, 0);
            w32(t, mem, reg::QUEUE_READY, 1);
            assert_eq!(r32(t, reg::QUEUE_READY), 1);
        }
        w32(t, mem, reg::STATUS, s | status::DRIVER_OK);
    }

    #[test]
    fn probe_and_echo() {
        let mut mem = VecMemory::new(0x20000);
        let mut t = MmioTransport::new(Echo { resets: 0 });
        bring_up(&mut t, &mut mem);
        assert_eq!(r32(&mut t, reg::DEVICE_ID), 42);
        let mut d = Driver::new();
        Driver::set_desc(&mut mem, 0, 0x8000, 3, 1, 1);
        Driver::set_desc(&mut mem, 1, 0x9000, 8, VIRTQ_DESC_F_WRITE, 0);
        mem.write(0x8000, b"abc").unwrap();
        d.publish(&mut mem, 0);
        assert!(!t.irq_level());
        w32(&mut t, &mut mem, reg::QUEUE_NOTIFY, 0);
        assert!(t.irq_level());
        assert_eq!(r32(&mut t, reg::INTERRUPT_STATUS), INT_USED_BUFFER);
        w32(&mut t, &mut mem, reg::INTERRUPT_ACK, INT_USED_BUFFER);
        assert!(!t.irq_level());
        assert_eq!(d.used(&mem), Some((0, 3)));
        let mut out = [0u8; 3];
        mem.read(0x9000, &mut out).unwrap();
        assert_eq!(&out, b"abc");
        // Reset.
        w32(&mut t, &mut mem, reg::STATUS, 0);
        assert_eq!(t.device().resets, 2);
        w32(&mut t, &mut mem, reg::QUEUE_SEL, 0);
        assert_eq!(r32(&mut t, reg::QUEUE_READY), 0);
    }

    #[test]
    fn config_space_widths() {
        let mut mem = VecMemory::new(0x20000);
        let mut t = MmioTransport::new(Echo { resets: 0 });
        let mut b1 = [0u8; 1];
        t.read(0x103, &mut b1).unwrap();
        assert_eq!(b1[0], 4);
        let mut b2 = [0u8; 2];
        t.read(0x106, &mut b2).unwrap();
        assert_eq!(b2, [7, 8]);
        let mut b8 = [0u8; 8];
        t.read(0x100, &mut b8).unwrap();
        assert_eq!(b8[7], 8);
        assert!(matches!(
            t.read(0x107, &mut b2),
            Err(MmioError::BadOffset { .. })
        ));
        assert!(matches!(
            t.read(0x100, &mut [0u8; 3]),
            Err(MmioError::BadWidth { .. })
        ));
        assert!(matches!(
            t.read(u64::MAX, &mut b1),
            Err(MmioError::BadOffset { .. })
        ));
        assert!(t.write(0x100, &[0u8; 16], &mut mem).is_err());
    }

    #[test]
    fn bad_register_accesses() {
        let mut mem = VecMemory::new(0x20000);
        let mut t = MmioTransport::new(Echo { resets: 0 });
        let mut b2 = [0u8; 2];
        assert_eq!(
            t.read(reg::MAGIC, &mut b2),
            Err(MmioError::BadWidth { offset: 0, len: 2 })
        );
        assert!(matches!(
            t.read(0x2, &mut [0u8; 4]),
            Err(MmioError::BadWidth { .. })
        ));
        assert!(matches!(
            t.read(0x18, &mut [0u8; 4]),
            Err(MmioError::BadOffset { .. })
        ));
        assert!(matches!(
            t.write(reg::STATUS, &[1], &mut mem),
            Err(MmioError::BadWidth { .. })
        ));
        assert!(matches!(
            t.write(reg::MAGIC, &[0; 4], &mut mem),
            Err(MmioError::BadOffset { .. })
        ));
        // Out-of-range queue selection is harmless.
        w32(&mut t, &mut mem, reg::QUEUE_SEL, 77);
        assert_eq!(r32(&mut t, reg::QUEUE_NUM_MAX), 0);
        w32(&mut t, &mut mem, reg::QUEUE_NUM, 8);
        w32(&mut t, &mut mem, reg::QUEUE_READY, 1);
        w32(&mut t, &mut mem, reg::QUEUE_NOTIFY, 77);
        w32(&mut t, &mut mem, reg::QUEUE_NOTIFY, u32::MAX);
    }

    #[test]
    fn features_must_include_version_1() {
        let mut mem = VecMemory::new(0x20000);
        let mut t = MmioTransport::new(Echo { resets: 0 });
        w32(&mut t, &mut mem, reg::DRIVER_FEATURES, 1 << 3);
        w32(&mut t, &mut mem, reg::STATUS, status::FEATURES_OK | 3);
        assert_eq!(r32(&mut t, reg::STATUS) & status::FEATURES_OK, 0);
        // Unknown feature bit.
        w32(&mut t, &mut mem, reg::DRIVER_FEATURES_SEL, 1);
        w32(&mut t, &mut mem, reg::DRIVER_FEATURES, 1);
        w32(&mut t, &mut mem, reg::DRIVER_FEATURES_SEL, 0);
        w32(&mut t, &mut mem, reg::DRIVER_FEATURES, 1 << 5);
        w32(&mut t, &mut mem, reg::STATUS, status::FEATURES_OK | 3);
        assert_eq!(r32(&mut t, reg::STATUS) & status::FEATURES_OK, 0);
    }

    #[test]
    fn malformed_queue_needs_reset() {
        let mut mem = VecMemory::new(0x20000);
        let mut t = MmioTransport::new(Echo { resets: 0 });
        bring_up(&mut t, &mut mem);
        let mut d = Driver::new();
        // Descriptor pointing outside guest memory.
        Driver::set_desc(&mut mem, 0, 0x1_0000_0000, 16, 0, 0);
        d.publish(&mut mem, 0);
        w32(&mut t, &mut mem, reg::QUEUE_NOTIFY, 0);
        assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(r32(&mut t, reg::INTERRUPT_STATUS), INT_CONFIG_CHANGE);
        assert!(matches!(
            t.take_error(),
            Some(DeviceError::Queue {
                queue: 0,
                error: QueueError::BufferOutOfBounds { .. }
            })
        ));
        // Further notifications are ignored until reset.
        Driver::set_desc(&mut mem, 0, 0x8000, 16, 0, 0);
        d.publish(&mut mem, 0);
        w32(&mut t, &mut mem, reg::QUEUE_NOTIFY, 0);
        assert_eq!(d.used(&mem), None);
        // Reset and bring up again: works.
        bring_up(&mut t, &mut mem);
        assert_eq!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    }

    #[test]
    fn queue_ready_with_bad_rings_needs_reset() {
        let mut mem = VecMemory::new(0x20000);
        let mut t = MmioTransport::new(Echo { resets: 0 });
        w32(&mut t, &mut mem, reg::QUEUE_SEL, 0);
        w32(&mut t, &mut mem, reg::QUEUE_NUM, 8);
        w32(&mut t, &mut mem, reg::QUEUE_DESC_LOW, 0xffff_f000);
        w32(&mut t, &mut mem, reg::QUEUE_READY, 1);
        assert_eq!(r32(&mut t, reg::QUEUE_READY), 0);
        assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    }
}
