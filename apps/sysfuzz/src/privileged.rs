//! The calls behind a privilege: the hypervisor (a small VM of its own),
//! the driver calls (on the NIC its spec gives it, nothing else drives it;
//! only when startup found one: the device is optional, and Bochs has
//! none), and the system calls it holds no right for (shutdown,
//! monitoring), which must only ever fail.

use starina::abi::syscall::SyscallNo;
use starina::abi::vcpu::Injection;
use starina::abi::vcpu::VcpuControl;
use starina::abi::vcpu::VcpuState;
use starina::HandleId;

use crate::fuzzer::k;
use crate::fuzzer::Fuzzer;
use crate::pool::Kind;

/// At most this many live guest RAMs (main thread) and DMA buffers per thread.
const MAX_VMS: usize = 1;
const MAX_DMA: usize = 3;

/// The rolls of `privileged_call` that are driver calls.
const DRIVER_CALLS: core::ops::RangeInclusive<u64> = 5..=11;

impl Fuzzer {
    pub fn privileged_call(&mut self) {
        let nic = self.env().nic;
        // Without a device the driver calls' rolls are rolled again, so the
        // other calls keep their proportions (and with one, the sequence
        // is the same as ever: one roll).
        let roll = loop {
            let roll = self.rng.below(16);
            if nic.is_some() || !DRIVER_CALLS.contains(&roll) {
                break roll;
            }
        };
        match (roll, nic) {
            (0, _) => self.vm_create(),
            (1 | 2, _) => self.guest_ram_access(),
            (3, _) => self.vcpu_run(),
            (4, _) => self.vcpu_control(),
            (5, Some(nic)) => self.device_info_and_config(nic),
            (6, Some(nic)) => self.device_mmio_map(nic),
            (7, Some(nic)) => self.interrupt_calls(nic),
            (8 | 9, Some(nic)) => self.dma_alloc(nic),
            (10, Some(_)) => self.dma_free(),
            (11, Some(nic)) => self.dma_translate(nic),
            // 12 to 15 (a driver call's roll never comes without a NIC).
            _ => self.system_calls(),
        }
    }

    fn count(&self, kind: Kind) -> usize {
        self.pool.count(kind)
    }

    /// The device argument: mostly the NIC, sometimes any number.
    fn device(&mut self, nic: HandleId) -> HandleId {
        if self.rng.one_in(4) {
            self.any(None)
        } else {
            nic
        }
    }

    fn vm_create(&mut self) {
        let valid = self.shared.guest_ram_bytes;
        let ram = match self.rng.below(6) {
            0 => 0,
            1 => 4096,
            2 => valid + 4096,
            3 => 1 << 40,
            4 => u64::MAX,
            _ => valid,
        };
        // A valid size only from the main thread, one VM at a time.
        if ram == valid && (self.worker || self.count(Kind::GuestRam) >= MAX_VMS) {
            return;
        }
        let hv = if self.rng.one_in(5) {
            self.any(None)
        } else {
            self.env().hypervisor
        };
        let r = k().vm_create(hv, ram);
        self.note(SyscallNo::VmCreate, &r);
        if let Ok((ram, vcpu)) = r {
            self.keep(ram, Kind::GuestRam);
            self.keep(vcpu, Kind::Vcpu);
        }
        // More vCPUs on some guest RAM (or anything): past its limit of 8
        // the kernel refuses.
        let ram = self.any(Some(Kind::GuestRam));
        let r = k().vcpu_create(ram);
        self.note(SyscallNo::VcpuCreate, &r);
        if let Ok(vcpu) = r {
            self.keep(vcpu, Kind::Vcpu);
        }
    }

    fn gpa(&mut self) -> u64 {
        let size = self.shared.guest_ram_bytes;
        match self.rng.below(5) {
            0 => 0,
            1 => size.saturating_sub(self.rng.below(8192)),
            2 => size,
            3 => self.rng.next(),
            _ => self.rng.below(size),
        }
    }

    fn guest_ram_access(&mut self) {
        let ram = self.any(Some(Kind::GuestRam));
        let gpa = self.gpa();
        let len = self.rng.size(4096, self.scratch.len());
        if self.rng.one_in(2) {
            let r = k().guest_ram_read(ram, gpa, &mut self.scratch[..len]);
            self.note(SyscallNo::GuestRamRead, &r);
        } else {
            let r = k().guest_ram_write(ram, gpa, &self.scratch[..len]);
            self.note(SyscallNo::GuestRamWrite, &r);
        }
    }

    /// A register state: real mode with random registers and entry point,
    /// or (with `wild_vcpu_state`) random control registers, flags and
    /// segments too. The segments are zeroed, or (with `reset_segments`)
    /// those of a CPU after reset, which VMX accepts.
    fn vcpu_state(&mut self) -> VcpuState {
        let mut s = VcpuState::default();
        if self.shared.reset_segments {
            set_reset_segments(&mut s);
        }
        for g in &mut s.gprs {
            *g = self.rng.next();
        }
        s.rip = self.rng.below(self.shared.guest_ram_bytes);
        s.rflags = 2;
        if self.shared.wild_vcpu_state && self.rng.one_in(3) {
            s.rflags = self.rng.next();
            s.cr0 = self.rng.next();
            s.cr3 = self.rng.next();
            s.cr4 = self.rng.next();
            s.efer = self.rng.next();
            s.cs.attrib = self.rng.next() as u16;
            s.gdtr.limit = self.rng.next() as u16;
        }
        s
    }

    fn injection(&mut self) -> Injection {
        match self.rng.below(7) {
            0 => Injection::Interrupt(self.rng.next() as u8),
            1 => Injection::Window,
            3 => Injection::Nmi,
            2 => Injection::Exception {
                vector: self.rng.next() as u8,
                error_code: self.rng.one_in(2).then(|| self.rng.next() as u32),
            },
            _ => Injection::None,
        }
    }

    fn vcpu_run(&mut self) {
        let vcpu = self.any(Some(Kind::Vcpu));
        let mut state = self.vcpu_state();
        let inject = self.injection();
        let r = k().vcpu_run(vcpu, &mut state, inject);
        self.note_vcpu_run(&r);
    }

    fn vcpu_control(&mut self) {
        let vcpu = self.any(Some(Kind::Vcpu));
        let control = match self.rng.below(4) {
            0 => VcpuControl::TscOffset(self.rng.next() as i64),
            1 => VcpuControl::Pat(self.rng.next()),
            2 => VcpuControl::Kick,
            _ => VcpuControl::ExitBy(self.rng.next()),
        };
        let r = k().vcpu_control(vcpu, control);
        self.note(SyscallNo::VcpuControl, &r);
    }

    fn config_offset(&mut self) -> u16 {
        match self.rng.below(4) {
            0 => self.rng.next() as u16,
            _ => (self.rng.below(64) * 4) as u16,
        }
    }

    fn device_info_and_config(&mut self, nic: HandleId) {
        let device = self.device(nic);
        match self.rng.below(6) {
            0 => {
                let r = k().device_info(device);
                self.note(SyscallNo::DeviceInfo, &r);
            }
            // I/O ports: the NIC has none (only a UART has), any handle
            // may come, and any offset and width.
            2 => {
                let (offset, width) = self.io_access();
                let r = k().device_io_read(device, offset, width);
                self.note(SyscallNo::DeviceIoRead, &r);
            }
            3 => {
                let (offset, width) = self.io_access();
                let value = self.rng.next() as u32;
                let r = k().device_io_write(device, offset, width, value);
                self.note(SyscallNo::DeviceIoWrite, &r);
            }
            1 => {
                // Writes go to the BARs (refused unless sizing) and to
                // registers that do not enable the device: the PCI command
                // register is left alone so the NIC never masters the bus.
                let offset = self.config_offset();
                let offset = if offset == 4 { 0x10 } else { offset };
                let random = self.rng.next() as u32;
                let value = self.rng.pick(&[0, u32::MAX, random]);
                let r = k().device_pci_config_write(device, offset, value);
                self.note(SyscallNo::DevicePciConfigWrite, &r);
            }
            _ => {
                let offset = self.config_offset();
                let r = k().device_pci_config_read(device, offset);
                self.note(SyscallNo::DevicePciConfigRead, &r);
            }
        }
    }

    /// An I/O port offset and access width, mostly plausible.
    fn io_access(&mut self) -> (u16, u8) {
        let random = self.rng.next();
        let offset = self.rng.pick(&[0, 5, 7, 8, u16::MAX, random as u16]);
        let width = self.rng.pick(&[1, 2, 4, 0, 3, (random >> 16) as u8]);
        (offset, width)
    }

    fn device_mmio_map(&mut self, nic: HandleId) {
        let device = self.device(nic);
        let bar = k().device_pci_config_read(nic, 0x10 + 4 * self.rng.below(6) as u16);
        self.note(SyscallNo::DevicePciConfigRead, &bar);
        let base = u64::from(bar.unwrap_or(0) & !0xf);
        let paddr = match self.rng.below(5) {
            0 => self.rng.next(),
            1 => 0,
            2 => u64::MAX - self.rng.below(4096),
            _ => base + self.rng.below(0x4000),
        };
        let len = self.rng.size(4096, 1 << 20);
        let r = k().device_mmio_map(device, paddr, len);
        self.note(SyscallNo::DeviceMmioMap, &r);
    }

    fn interrupt_calls(&mut self, nic: HandleId) {
        if self.rng.one_in(2) {
            let device = self.device(nic);
            let r = k().interrupt_create(device);
            self.note(SyscallNo::InterruptCreate, &r);
            if let Ok(irq) = r {
                self.keep(irq, Kind::Interrupt);
            }
        } else {
            let irq = self.any(Some(Kind::Interrupt));
            let r = k().interrupt_ack(irq);
            self.note(SyscallNo::InterruptAck, &r);
        }
    }

    fn dma_alloc(&mut self, nic: HandleId) {
        let pages = match self.rng.below(8) {
            0 => 0,
            1 => 1024 + self.rng.below(2) as usize,
            2 => usize::MAX,
            _ => 1 + self.rng.below(4) as usize,
        };
        if (1..=1024).contains(&pages) && self.count(Kind::Dma) >= MAX_DMA {
            return;
        }
        let device = self.device(nic);
        let r = k().dma_alloc(device, pages);
        self.note(SyscallNo::DmaAlloc, &r);
        if let Ok(dma) = r {
            self.keep(dma.handle, Kind::Dma);
        }
    }

    fn dma_free(&mut self) {
        let id = self.victim(Some(Kind::Dma));
        let r = k().dma_free(id);
        self.note(SyscallNo::DmaFree, &r);
        if r.is_ok() {
            self.pool.remove(id);
        }
    }

    fn dma_translate(&mut self, nic: HandleId) {
        let device = self.device(nic);
        let local = 0u64;
        let vaddr = match self.rng.below(5) {
            0 => self.scratch.as_ptr() as usize + self.rng.below(4096) as usize,
            1 => core::ptr::addr_of!(local) as usize,
            2 => 0,
            3 => usize::MAX - self.rng.below(4096) as usize,
            _ => self.rng.next() as usize,
        };
        let len = self.rng.size(4096, usize::MAX);
        let r = k().dma_translate(device, vaddr, len);
        self.note(SyscallNo::DmaTranslate, &r);
    }

    /// Shutdown, monitoring and the console: it holds none of these
    /// rights, so each must fail.
    fn system_calls(&mut self) {
        let id = self.any(None);
        match self.rng.below(7) {
            0 => {
                let r = k().system_shutdown(id, self.rng.next() as u8);
                self.note(SyscallNo::SystemShutdown, &r);
            }
            1 => {
                let r = k().system_component_status(id, self.rng.below(8) as usize);
                self.note(SyscallNo::SystemComponentStatus, &r);
            }
            2 => {
                let len = self.rng.size(4096, self.scratch.len());
                let r = k().system_log_read(id, self.rng.next(), &mut self.scratch[..len]);
                self.note(SyscallNo::SystemLogRead, &r);
            }
            3 => {
                let len = self.rng.size(4096, self.scratch.len());
                let r = k().console_read(id, &mut self.scratch[..len]);
                self.note(SyscallNo::ConsoleRead, &r);
            }
            4 => {
                let len = self.rng.size(4096, self.scratch.len());
                let r = k().console_write(id, &self.scratch[..len]);
                self.note(SyscallNo::ConsoleWrite, &r);
            }
            5 => {
                let r = k().system_cpu_stats(id, self.rng.below(10) as usize);
                self.note(SyscallNo::SystemCpuStats, &r);
            }
            _ => {
                let r = k().system_memory_stats(id);
                self.note(SyscallNo::SystemMemoryStats, &r);
            }
        }
    }
}

/// The segment caches, TR, LDTR, GDTR and IDTR of a CPU after reset (real
/// mode, selectors and bases 0, limits 64 KiB): present data segments
/// (read/write, accessed), a present code segment (execute/read,
/// accessed), a busy 16-bit TSS and an LDT, as VMX's guest-state checks
/// want them (SVM accepts zeroed ones as well).
fn set_reset_segments(s: &mut VcpuState) {
    use starina::abi::vcpu::DescriptorTable;
    use starina::abi::vcpu::Segment;
    let segment = |attrib| Segment {
        selector: 0,
        attrib,
        limit: 0xffff,
        base: 0,
    };
    s.cs = segment(0x9b);
    for data in [&mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss] {
        *data = segment(0x93);
    }
    s.tr = segment(0x8b);
    s.ldtr = segment(0x82);
    let table = DescriptorTable {
        base: 0,
        limit: 0xffff,
    };
    s.gdtr = table;
    s.idtr = table;
}
