//! A user-mode driver for the tests of user-mode drivers (its spec says
//! `isolation = "user"`), on a virtio-rng device:
//!
//! - [`refusals`]: what the kernel must refuse it, each with an error and
//!   never a fault: registers outside its device, DMA sizes and addresses
//!   it may not have, bad PCI configuration offsets, bad handles, and any
//!   copy by the kernel through its device mappings;
//! - then it drives the device: random bytes through a virtqueue in its
//!   DMA memory, the buffer found by `dma_translate` in its own pages;
//! - its first `crashes` instances then fault on purpose (a write to an
//!   unmapped page) holding `crash_dma_pages` pages of DMA memory, the
//!   device's registers mapped and its interrupt taken: the kernel must end
//!   it alone and free all of it (the network test reads the DMA pages in
//!   use), and the restarted instance must drive the device again.
//!
//! It logs `drvprobe: instance N: ...` lines the tests look for (instances
//! count from 1).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod refusals;

use alloc::format;
use alloc::string::String;
use alloc::vec;

use starina::driver::virtio::transport;
use starina::driver::virtio::StarinaHal;
use starina::driver::Device;
use starina::driver::DmaBuffer;
use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::mainloop::Mainloop;
use starina::Error;
use starina::HandleId;
use starina::Message;
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::transport::SomeTransport;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// Where a crashing instance writes: an unmapped page.
const CRASH_ADDRESS: usize = 0x1000;
/// Random bytes asked of the device.
const ENTROPY_BYTES: usize = 64;

pub fn main(env: Env) -> Result<(), String> {
    let instance = env.instance;
    let device = env.rng;
    let checked = refusals::check(&device).map_err(|e| format!("instance {instance}: {e}"))?;
    let got = drive(&device).map_err(|e| format!("instance {instance}: {e}"))?;
    log::info!(
        "instance {instance}: {checked} refusals checked; {got} random bytes from the device"
    );
    if i64::from(instance) <= CONFIG.crashes {
        crash(&device, instance)?;
    }
    log::info!(
        "instance {instance}: up after {} crashes, driving the device",
        CONFIG.crashes
    );
    let mut ml = Mainloop::new().map_err(|e| format!("mainloop: {e}"))?;
    ml.cx()
        .add_supervisor(env.supervisor)
        .map_err(|e| format!("supervisor: {e}"))?;
    ml.run(&mut Idle).map_err(|e| format!("main loop: {e}"))
}

/// Opens the device and reads random bytes from it; how many.
fn drive(device: &Device) -> Result<usize, String> {
    let transport: SomeTransport<'static> =
        transport(device).map_err(|e| format!("cannot open the transport: {e}"))?;
    let mut rng = VirtIORng::<StarinaHal, _>::new(transport)
        .map_err(|e| format!("virtio-rng initialization failed: {e:?}"))?;
    // On the heap: shared with the device in place (`dma_translate` of
    // this process's own page).
    let mut bytes = vec![0u8; ENTROPY_BYTES];
    let got = rng
        .request_entropy(&mut bytes)
        .map_err(|e| format!("no entropy: {e:?}"))?;
    if got == 0 || bytes.iter().all(|&b| b == 0) {
        return Err(format!("the device wrote {got} bytes, all zero"));
    }
    Ok(got)
}

/// Takes DMA memory, the interrupt and the registers, then faults.
fn crash(device: &Device, instance: u32) -> Result<(), String> {
    let pages = usize::try_from(CONFIG.crash_dma_pages).map_err(|_| "bad crash_dma_pages")?;
    let mut dma = DmaBuffer::new(device, pages).map_err(|e| format!("dma_alloc: {e}"))?;
    dma.as_mut_slice().fill(0xa5);
    let irq = device.interrupt().map_err(|e| format!("interrupt: {e}"))?;
    let _open = transport(device).map_err(|e| format!("transport: {e}"))?;
    log::info!(
        "instance {instance}: crashing on purpose holding {pages} DMA pages, its registers and interrupt {:?}",
        irq.id()
    );
    starina::testing::wild_write(CRASH_ADDRESS);
    Err(format!("the write to {CRASH_ADDRESS:#x} did not fault"))
}

struct Idle;

impl Handler for Idle {
    type State = ();

    fn message(
        &mut self,
        _: &mut Cx<()>,
        _: HandleId,
        _: &mut (),
        msg: Message<'_>,
    ) -> Result<(), Error> {
        log::warn!("drvprobe: ignoring {:?}: it serves nothing", msg.kind());
        Ok(())
    }
}
