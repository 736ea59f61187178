//! The linux server: runs a Linux microVM and lets native components run
//! Linux programs in it.
//!
//! Two threads:
//! - the **vCPU thread** ([`vcpu`]) builds the VM from the boot file system's
//!   kernel and initramfs and runs it through the VMM (`starina-vmm`); the
//!   guest's serial console goes to the log as `linux: [guest] ...`;
//! - the **main thread** (the [`Handler`](starina::mainloop::Handler) in
//!   [`handler`]) serves clients over channels and speaks the process
//!   protocol (`starina_bridge::process`) with the guest agent over the VM's
//!   virtio-console.
//!
//! Clients use the native process API of `starina_bridge::exec` (described
//! in `servers/linux/README.md`): `Open { uri: "exec" }`, then the request
//! and stdin on the process channel, output and the exit status back.
//!
//! | module | job |
//! |---|---|
//! | [`handler`] | the main loop's events, routed to the modules below |
//! | [`clients`] | `Open` on the `linux` channel: a new process channel or a refusal |
//! | [`process`] | the process table: requests, stdin, events and the end of each process |
//! | [`to_guest`] | frames for the agent, and stdin flow control |
//! | [`stdin`] | one process's stdin: the agent's window, and when to read more |
//! | [`request_deadline`] | process channels that send no request in time are closed |
//! | [`from_guest`] | the agent's frames, output flow control, the VM's status |
//! | [`liveness`] | pings the agent; a guest that stops answering is restarted |
//! | [`native`] | native commands that Linux programs run (`starina CMD` in the guest) |
//! | [`shared`] | what the two threads share |
//! | [`files`] | native files for the guest: the FUSE server over the fs server, as virtio-fs |
//! | [`net`] | the guest's network: a NAT from its virtio-net to tcpip, and forwards of its listeners |
//! | [`network`] | the NAT's events and frames in the main loop |
//! | [`vcpu`] | the vCPU thread |
//!
//! When the guest dies (kernel panic, power-off, triple fault) the server
//! logs why, fails every process with an `Error`, and exits with code 1: the
//! spec's restart policy boots a fresh VM, and clients get
//! `reconnect:<field>` from startup.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod clients;
mod files;
mod from_guest;
mod fuse_tally;
#[cfg(test)]
mod fuzz;
mod handler;
mod liveness;
mod native;
mod net;
mod network;
mod process;
mod request_deadline;
mod shared;
mod stdin;
mod to_guest;
mod vcpu;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use starina::channel::Channel;
use starina::mainloop::Mainloop;
use starina::Error;
use starina::HandleId;
use starina_bridge::process::FrameDecoder;

use crate::liveness::Liveness;
use crate::process::Proc;
use crate::request_deadline::RequestDeadline;
use crate::shared::Shared;
use crate::shared::Status;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// The `Open` URI that crashes the guest kernel (test only, see the spec's
/// `allow_test_panic`).
pub const TEST_PANIC_URI: &str = "test:panic";

/// The `Open` URI that answers the ports forwarded into Linux, as JSON:
/// `[{"port":8000,"protocol":"tcp","process":"busybox","connections":3}]`
/// (httpd's `/api/forwards`).
pub const FORWARDS_URI: &str = "forwards:";
/// The `Open` URI that asks for TCP port `P` of Linux to be forwarded,
/// `forward-port:P` (a Linux service's runner sends it for its spec's
/// `ports`; see `Nat::allow_port`).
pub const FORWARD_PORT_URI: &str = "forward-port:";

/// What each channel in the main loop is to the server.
#[derive(Clone, Copy)]
enum Ctx {
    /// A client's connection to the `linux` service.
    Client,
    /// A process channel; the number is the process id in the agent
    /// protocol.
    Process(u32),
    /// Wake-ups from the vCPU thread.
    Wake,
    /// Fires when a process channel's request is due ([`request_deadline`]).
    RequestTimer,
    /// Fires when the agent is due a ping, or its answer ([`liveness`]).
    LivenessTimer,
    /// The `tcpip` service: the NAT's `Open`s and their replies.
    Tcpip,
    /// A TCP flow's tcpip connection (the NAT's flow id).
    TcpFlow(u32),
    /// A UDP flow's tcpip channel.
    UdpFlow(u32),
    /// The tcpip listener of a port forwarded into the guest.
    Forward(u16),
    /// The tcpip UDP listener of a UDP port forwarded into the guest.
    UdpForward(u16),
    /// The NAT's timer (smoltcp's deadlines, flow timeouts).
    NetTimer,
    /// A native command's job, by the guest's id ([`native`]).
    NativeJob(u32),
    /// Our end of a native command's stdin.
    NativeStdin(u32),
    /// Our end of a native command's stdout.
    NativeStdout(u32),
    /// Our end of a native command's stderr.
    NativeStderr(u32),
}

/// The main thread's state.
struct Server {
    shared: Arc<Shared>,
    /// Our end of the wake channel (in the loop as `Ctx::Wake`).
    wake: HandleId,
    procs: BTreeMap<u32, Proc>,
    next_id: u32,
    decoder: FrameDecoder,
    /// The guest's kernel release, once the agent said `Ready`.
    ready: Option<String>,
    /// Frames for the agent, held until it is ready.
    held: Vec<u8>,
    /// The process channel whose backlog stopped the decoding of guest
    /// output; decoding goes on once it has drained.
    output_blocked_on: Option<HandleId>,
    /// Why there is no VM, when there is none for good.
    unavailable: Option<String>,
    max_processes: usize,
    allow_test_panic: bool,
    request_deadline: RequestDeadline,
    liveness: Liveness,
    /// In the main loop as `Ctx::LivenessTimer`; `None` if it could not be
    /// created (then a hung guest is not noticed).
    liveness_timer: Option<HandleId>,
    /// The guest's network, when the profile has tcpip.
    net: Option<net::Nat>,
    /// The native commands Linux programs run.
    native: Option<native::Native>,
}

pub fn main(env: Env) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    let (ours, theirs) = Channel::create()?;
    let wake = ml.cx().add_channel(ours, Ctx::Wake)?;
    ml.cx().add_supervisor(env.supervisor)?;
    let request_timer = match starina::timer::Timer::create() {
        Ok(timer) => ml.cx().add_timer(timer, Ctx::RequestTimer).ok(),
        Err(e) => {
            log::warn!("no request timer ({e}): silent process channels are never closed");
            None
        }
    };
    let liveness_timer = match starina::timer::Timer::create() {
        Ok(timer) => ml.cx().add_timer(timer, Ctx::LivenessTimer).ok(),
        Err(e) => {
            log::warn!("no liveness timer ({e}): a hung guest is not restarted");
            None
        }
    };
    let shared = Arc::new(Shared::new());
    let mut server = Server {
        shared: shared.clone(),
        wake,
        procs: BTreeMap::new(),
        next_id: 1,
        decoder: FrameDecoder::new(),
        ready: None,
        held: Vec::new(),
        output_blocked_on: None,
        unavailable: None,
        max_processes: env.config.max_processes.clamp(1, 4096) as usize,
        allow_test_panic: env.config.allow_test_panic,
        request_deadline: RequestDeadline::new(
            request_timer,
            env.config.request_timeout_ms.clamp(1, 3_600_000) as u64,
        ),
        liveness: Liveness::default(),
        liveness_timer,
        net: None,
        native: Some(native::Native::new(
            env.spawn,
            env.config.max_native_commands.clamp(1, 32) as usize,
            env.config.native_refused,
        )),
    };
    if let Some(tcpip) = env.tcpip {
        match net::Nat::new(ml.cx(), tcpip, net_config(&env.config)) {
            Ok(nat) => {
                log::info!("net: {}", net::describe(nat.config()));
                server.net = Some(nat);
            }
            Err(e) => log::warn!("net: no network for the guest: {e}"),
        }
    }
    let job = vcpu::Job {
        hypervisor: env.hypervisor,
        wake: theirs,
        shared,
        config: vm_config(&env.config, server.net.is_some()),
        fs: env.fs,
        root_disk: env.root_disk,
    };
    if let Err(e) = starina::thread::spawn(move || vcpu::thread_main(job)) {
        let why = format!("cannot start the vCPU thread: {e}");
        log::error!("{why}");
        server.shared.stop(Status::Unavailable(why));
        server.check_status(ml.cx());
    }
    ml.run(&mut server)
}

/// The VM the spec's config asks for.
fn vm_config(config: &Config, net: bool) -> vcpu::VmConfig {
    let memory_mib = config.memory_mib.clamp(16, 1 << 20) as u64 & !1;
    let mut cmdline = String::from(config.cmdline);
    if !config.cmdline_extra.is_empty() {
        cmdline.push(' ');
        cmdline.push_str(config.cmdline_extra);
    }
    vcpu::VmConfig {
        memory_bytes: memory_mib << 20,
        vcpus: config.vcpus.clamp(1, starina_vmm::smp::MAX_VCPUS as i64) as usize,
        kernel_file: config.kernel_file,
        initramfs_file: config.initramfs_file,
        cmdline,
        share_fs_tag: config.share_fs_tag,
        share_fs_mount: config.share_fs_mount,
        net,
    }
}

/// The NAT's limits and forwarding policy from the spec's config (a bad
/// port in `forward_ports` is logged and skipped).
fn net_config(config: &Config) -> net::NetConfig {
    let mut forward_ports = Vec::new();
    for item in config.forward_ports.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<u16>() {
            Ok(port) if port > 0 => forward_ports.push(port),
            _ => log::warn!("net: forward_ports: '{item}' is not a port; skipped"),
        }
    }
    net::NetConfig {
        mtu: usize::from(starina_vmm::virtio::net::Net::MTU),
        max_tcp_flows: config.max_tcp_flows.clamp(1, 4096) as usize,
        max_udp_flows: config.max_udp_flows.clamp(1, 4096) as usize,
        forward_min_port: config.forward_min_port.clamp(1, 65535) as u16,
        forward_ports,
    }
}
