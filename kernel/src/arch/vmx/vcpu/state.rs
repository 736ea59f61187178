//! Moving the VMM's [`VcpuState`] into the VMCS and back, and event
//! injection.

use starina::abi::vcpu::cr;
use starina::abi::vcpu::DescriptorTable;
use starina::abi::vcpu::Segment;
use starina::abi::vcpu::VcpuState;
use starina::hypervisor::Injection;

use super::super::decode;
use super::super::enable::entry;
use super::super::enable::primary;
use super::super::fields as f;
use super::super::fields::Seg;
use super::super::vmcs::read;
use super::super::vmcs::read32;
use super::w;
use super::Event;
use super::VmxVcpu;
use super::BLOCKING_NMI;
use super::BLOCKING_STI_MOV_SS;
use super::DELIVER_ERROR_CODE;
use super::TYPE_HARDWARE_EXCEPTION;
use super::TYPE_NMI;
use super::VALID;

fn segments(s: &VcpuState) -> [(Seg, &Segment); 8] {
    [
        (Seg::Es, &s.es),
        (Seg::Cs, &s.cs),
        (Seg::Ss, &s.ss),
        (Seg::Ds, &s.ds),
        (Seg::Fs, &s.fs),
        (Seg::Gs, &s.gs),
        (Seg::Ldtr, &s.ldtr),
        (Seg::Tr, &s.tr),
    ]
}

fn read_segment(seg: Seg) -> Segment {
    Segment {
        selector: read(seg.selector()) as u16,
        attrib: decode::attributes(read32(seg.access_rights())),
        limit: read32(seg.limit()),
        base: read(seg.base()),
    }
}

/// The exceptions that push an error code (protected mode only).
fn pushes_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17)
}

impl VmxVcpu {
    pub(super) fn load_state(&mut self, s: &VcpuState) {
        // The VMM moved RIP past the instruction that exited (HLT after
        // STI, an emulated OUT...): the interrupt shadow it was in no
        // longer applies.
        if read(f::GUEST_RIP) != s.rip {
            let blocking = read(f::GUEST_INTERRUPTIBILITY);
            if blocking & BLOCKING_STI_MOV_SS != 0 {
                w(f::GUEST_INTERRUPTIBILITY, blocking & !BLOCKING_STI_MOV_SS);
            }
        }
        for (seg, segment) in segments(s) {
            w(seg.selector(), segment.selector as u64);
            w(seg.limit(), segment.limit as u64);
            w(
                seg.access_rights(),
                decode::access_rights(segment.attrib) as u64,
            );
            w(seg.base(), segment.base);
        }
        w(f::GUEST_GDTR_BASE, s.gdtr.base);
        w(f::GUEST_GDTR_LIMIT, s.gdtr.limit as u64);
        w(f::GUEST_IDTR_BASE, s.idtr.base);
        w(f::GUEST_IDTR_LIMIT, s.idtr.limit as u64);
        let cr0 = self.cr0(s.cr0);
        w(f::GUEST_CR0, cr0.real);
        w(f::CR0_READ_SHADOW, cr0.shadow);
        let cr4 = self.cr4(s.cr4);
        w(f::GUEST_CR4, cr4.real);
        w(f::CR4_READ_SHADOW, cr4.shadow);
        w(f::GUEST_CR3, s.cr3);
        self.cr2 = s.cr2;
        w(f::GUEST_EFER, s.efer);
        let entry = if s.efer & cr::EFER_LMA != 0 {
            self.info.entry | entry::IA32E_GUEST
        } else {
            self.info.entry
        };
        if entry != self.entry {
            w(f::ENTRY_CONTROLS, entry as u64);
            self.entry = entry;
        }
        w(f::GUEST_RFLAGS, s.rflags | 2);
        w(f::GUEST_RIP, s.rip);
        w(f::GUEST_RSP, s.gprs[4]);
        let g = &mut self.gprs;
        g.rax = s.gprs[0];
        g.rcx = s.gprs[1];
        g.rdx = s.gprs[2];
        g.rbx = s.gprs[3];
        g.rbp = s.gprs[5];
        g.rsi = s.gprs[6];
        g.rdi = s.gprs[7];
        g.r8 = s.gprs[8];
        g.r9 = s.gprs[9];
        g.r10 = s.gprs[10];
        g.r11 = s.gprs[11];
        g.r12 = s.gprs[12];
        g.r13 = s.gprs[13];
        g.r14 = s.gprs[14];
        g.r15 = s.gprs[15];
    }

    pub(super) fn save_state(&self, s: &mut VcpuState) {
        s.es = read_segment(Seg::Es);
        s.cs = read_segment(Seg::Cs);
        s.ss = read_segment(Seg::Ss);
        s.ds = read_segment(Seg::Ds);
        s.fs = read_segment(Seg::Fs);
        s.gs = read_segment(Seg::Gs);
        s.ldtr = read_segment(Seg::Ldtr);
        s.tr = read_segment(Seg::Tr);
        s.gdtr = DescriptorTable {
            base: read(f::GUEST_GDTR_BASE),
            limit: read(f::GUEST_GDTR_LIMIT) as u16,
        };
        s.idtr = DescriptorTable {
            base: read(f::GUEST_IDTR_BASE),
            limit: read(f::GUEST_IDTR_LIMIT) as u16,
        };
        let cr0_mask = self.cr0(0).mask;
        s.cr0 = decode::guest_view(read(f::GUEST_CR0), read(f::CR0_READ_SHADOW), cr0_mask);
        let cr4_mask = self.cr4(0).mask;
        s.cr4 = decode::guest_view(read(f::GUEST_CR4), read(f::CR4_READ_SHADOW), cr4_mask);
        s.cr3 = read(f::GUEST_CR3);
        s.cr2 = self.cr2;
        s.efer = read(f::GUEST_EFER);
        s.rflags = read(f::GUEST_RFLAGS);
        s.rip = read(f::GUEST_RIP);
        s.gprs[4] = read(f::GUEST_RSP);
        let g = &self.gprs;
        s.gprs[0] = g.rax;
        s.gprs[1] = g.rcx;
        s.gprs[2] = g.rdx;
        s.gprs[3] = g.rbx;
        s.gprs[5] = g.rbp;
        s.gprs[6] = g.rsi;
        s.gprs[7] = g.rdi;
        s.gprs[8] = g.r8;
        s.gprs[9] = g.r9;
        s.gprs[10] = g.r10;
        s.gprs[11] = g.r11;
        s.gprs[12] = g.r12;
        s.gprs[13] = g.r13;
        s.gprs[14] = g.r14;
        s.gprs[15] = g.r15;
        s.xcr0 = self.xstate.xcr0();
    }

    /// An exception as the VMM asks for it, in the form VM entry accepts:
    /// vector 2 is an NMI, and an error code goes with exactly the
    /// vectors that push one, in protected mode (0 if the VMM gave none).
    pub(super) fn exception(vector: u8, error_code: Option<u32>, state: &VcpuState) -> Event {
        if vector == 2 {
            return Event {
                info: 2 | TYPE_NMI | VALID,
                error_code: 0,
                instruction_len: 0,
            };
        }
        let mut info = vector as u32 | TYPE_HARDWARE_EXCEPTION | VALID;
        if pushes_error_code(vector) && state.cr0 & cr::CR0_PE != 0 {
            info |= DELIVER_ERROR_CODE;
        }
        Event {
            info,
            error_code: error_code.unwrap_or(0),
            instruction_len: 0,
        }
    }

    /// Sets up event injection for the next entry: an interrupted event
    /// first, then a fault the kernel raised, then an exception, then a
    /// held NMI, then the oldest pending interrupt if the guest can take
    /// it now; otherwise an interrupt (NMI) window is requested and the
    /// interrupt (NMI) waits here.
    pub(super) fn inject(&mut self, inject: Injection, state: &VcpuState) {
        let mut event = None;
        let mut want_window = false;
        match inject {
            Injection::None => {}
            Injection::Window => want_window = true,
            Injection::Interrupt(vector) => {
                self.pending_irqs.push(vector);
            }
            Injection::Exception { vector, error_code } => {
                event = Some(Self::exception(vector, error_code, state));
            }
            Injection::Nmi if self.info.nmis => self.pending_nmi = true,
            Injection::Nmi => {
                log::warn!("vmx: no virtual NMIs on this CPU: an NMI for the guest is dropped")
            }
        }
        if let Some(fault) = self.fault.take() {
            event = Some(fault);
        }
        if let Some(interrupted) = self.reinject.take() {
            event = Some(interrupted);
        }
        let interruptibility = read(f::GUEST_INTERRUPTIBILITY);
        let blocked = interruptibility & BLOCKING_STI_MOV_SS != 0;
        let nmi_blocked = blocked || interruptibility & BLOCKING_NMI != 0;
        if event.is_none() && self.pending_nmi && !nmi_blocked {
            self.pending_nmi = false;
            event = Some(Event {
                info: 2 | TYPE_NMI | VALID,
                error_code: 0,
                instruction_len: 0,
            });
        }
        if event.is_none() && state.interrupts_enabled() && !blocked {
            if let Some(vector) = self.pending_irqs.pop() {
                event = Some(Event {
                    info: vector as u32 | VALID,
                    error_code: 0,
                    instruction_len: 0,
                });
            }
        }
        let window = !self.pending_irqs.is_empty() || want_window;
        let mut controls = self.info.primary;
        if window {
            controls |= primary::INTERRUPT_WINDOW_EXITING;
        }
        if self.pending_nmi {
            controls |= primary::NMI_WINDOW_EXITING;
        }
        if controls != self.primary {
            w(f::PRIMARY_CONTROLS, controls as u64);
            self.primary = controls;
        }
        let Some(e) = event else {
            w(f::ENTRY_INTERRUPTION_INFO, 0);
            return;
        };
        w(f::ENTRY_INTERRUPTION_INFO, e.info as u64);
        if e.info & DELIVER_ERROR_CODE != 0 {
            w(f::ENTRY_EXCEPTION_ERROR_CODE, e.error_code as u64);
        }
        if super::is_software(e.info) {
            w(f::ENTRY_INSTRUCTION_LEN, e.instruction_len as u64);
        }
    }
}
