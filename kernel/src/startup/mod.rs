//! Startup: boots the components of a profile as their specs say, wires
//! their channels, and supervises them (restart policies).
//!
//! Wiring: for every `needs` entry, startup creates a channel, gives one end
//! to the client (its typed `Env` field) and sends the other to the
//! provider's supervisor channel as `Open { uri: "connect:<service>" }`.
//! When a provider restarts, each client still running gets a fresh channel
//! on its own supervisor channel as `Open { uri: "reconnect:<field>" }`.
//!
//! Restarts follow the spec's budget, `max_restarts` within
//! `restart_window_s`, with a delay that doubles with each restart in the
//! window (`crate::restart_limit`): the new instance is created and wired
//! at once, and its main thread waits out the delay before the component's
//! `main` runs.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use starina::abi::markers;
use starina::abi::Rights;
use starina::env::RawEnv;
use starina::message::Message;
use starina::spec::ComponentDef;
use starina::spec::Privilege;
use starina::spec::ProfileDef;
use starina::spec::RestartPolicy;

use crate::handle::Handle;
use crate::handle::Object;
use crate::object::channel::Channel;
use crate::object::channel::ChannelMessage;
use crate::object::console::Console;
use crate::object::system::SystemObject;
use crate::object::system::SystemRight;
use crate::process::ExitReason;
use command::command_ended;
use crate::process::Process;
use crate::restart_limit::RestartDecision;
use crate::restart_limit::RestartLimit;
use crate::restart_limit::RestartWindow;
use crate::sync::SpinLock;

mod command;

pub use command::command_name;
pub use command::spawn_command;
pub use command::tell_stderr;

mod wiring {
    include!(concat!(env!("OUT_DIR"), "/starina_wiring.rs"));
}

pub use wiring::COMMANDS;
pub use wiring::COMPONENTS;
pub use wiring::PROFILES;

struct Instance {
    process: Arc<Process>,
    /// Startup's end of the component's supervisor channel.
    supervisor: Arc<Channel>,
}

struct Slot {
    index: usize,
    instance: Option<Instance>,
    /// Instance number of the latest start (1 = first).
    generation: u32,
    /// Restarts since boot.
    restarts: u32,
    /// Restarts in the current budget window.
    window: RestartWindow,
    /// Stopped by `component_control`: not restarted until told to.
    held: bool,
    /// Restart it at once when its instance ends (`component_control`).
    restart_now: bool,
}

struct State {
    profile: &'static ProfileDef,
    slots: Vec<Slot>,
    started: usize,
    ready: bool,
    /// Running instances of each command (index into `COMMANDS`).
    command_runs: Vec<u32>,
}

static STATE: SpinLock<Option<State>> = SpinLock::new(None);

/// What a component's main thread receives.
struct StartArgs {
    start: fn(RawEnv),
    env: RawEnv,
    /// How long to wait before `start` (a restart's backoff).
    delay_ns: u64,
    /// A profile's component (counted for `starina: ready`), not a command.
    in_profile: bool,
    /// It runs in user mode: this thread loads its image and starts its
    /// main thread in ring 3 instead of calling `start` (`crate::user`).
    user: bool,
}

fn def(index: usize) -> &'static ComponentDef {
    &COMPONENTS[index]
}

/// The entry point of component `index` in `profile`: the one that applies
/// the profile's `[config.<component>]`, if it has one.
fn entry_point(profile: &ProfileDef, index: usize) -> fn(RawEnv) {
    match profile.config_override(def(index).name) {
        Some(o) => o.start,
        None => def(index).start,
    }
}

fn find_component(name: &str) -> Option<usize> {
    COMPONENTS.iter().position(|c| c.name == name)
}

pub fn find_profile(name: &str) -> Option<&'static ProfileDef> {
    PROFILES.iter().find(|p| p.name == name)
}

pub fn profile_names() -> String {
    let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
    names.join(", ")
}

impl State {
    fn slot_of(&self, index: usize) -> Option<usize> {
        self.slots.iter().position(|s| s.index == index)
    }

    /// The slot of the component in this profile that exports `service`.
    fn provider_of(&self, service: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| def(s.index).exports.contains(&service))
    }
}

fn open_message(uri: &str, handle: Handle) -> Option<ChannelMessage> {
    let mut body = Vec::new();
    Message::Open {
        call_id: 0,
        uri,
        handle: None,
    }
    .encode_body(&mut body);
    ChannelMessage::new(
        starina::message::MessageKind::Open as u8,
        &body,
        alloc::vec![handle],
    )
    .ok()
}

/// Sends one end of a new connection to a running component's supervisor
/// channel. If it is not running, the end is dropped and the other side
/// sees peer-closed.
fn offer(to: Option<&Instance>, uri: &str, end: Arc<Channel>) {
    let Some(inst) = to else { return };
    let Some(msg) = open_message(uri, Handle::new(Object::Channel(end), Rights::DEFAULT)) else {
        return;
    };
    if let Err((e, _)) = inst.supervisor.send(msg) {
        log::warn!("startup: could not hand '{uri}' to {}: {e}", inst.process.name);
    }
}

/// Creates a component instance: its process, supervisor channel, and the
/// handles its spec names. Its thread starts later (`launch`).
/// A system object granting `right`.
fn system(right: SystemRight) -> Object {
    Object::System(SystemObject::new(right))
}

fn create_instance(state: &mut State, slot: usize) -> Option<(Arc<Process>, RawEnv)> {
    let index = state.slots[slot].index;
    let d = def(index);
    let generation = state.slots[slot].generation + 1;
    let process = Process::new(d.name, Some(index), generation);
    crate::account::start_instance(process.account, d.memory_limit_mib as usize * 1024 * 1024);
    let (sup_kernel, sup_component) = Channel::new_pair();
    let mut env = RawEnv::new(d.name, generation);
    {
        let mut table = process.handles.lock();
        let id = table
            .insert(Handle::new(Object::Channel(sup_component), Rights::DEFAULT))
            .ok()?;
        env.push("supervisor", id);
        grant_privileges(&mut table, d, &mut env)?;
        for need in d.devices {
            let Some(device) = crate::device::claim(need.matches) else {
                if need.optional {
                    // The env field is `None`: the component starts without it.
                    log::info!(
                        "startup: {} starts without a {} device (optional spec field '{}'): there is none free",
                        d.name,
                        need.describe,
                        need.name
                    );
                    continue;
                }
                log::error!(
                    "startup: {} needs a {} device (spec field '{}') and there is none free; not starting it",
                    d.name,
                    need.describe,
                    need.name
                );
                return None;
            };
            log::info!(
                "startup: {} gets {} as '{}'",
                d.name,
                starina::driver::describe_address(&device.info.address),
                need.name
            );
            // Not transferable: the device stays with its driver.
            let id = table
                .insert(Handle::new(
                    Object::Device(device),
                    Rights::READ | Rights::WRITE | Rights::POLL,
                ))
                .ok()?;
            env.push(need.name, id);
        }
    }
    state.slots[slot].generation = generation;
    state.slots[slot].instance = Some(Instance {
        process: process.clone(),
        supervisor: sup_kernel,
    });
    Some((process, env))
}

/// Puts a system object in `table` for each privilege `d` has, named in
/// `env` as the generated `Env` takes it.
fn grant_privileges(
    table: &mut crate::handle::HandleTable,
    d: &ComponentDef,
    env: &mut RawEnv,
) -> Option<()> {
    for p in d.privileges {
        let (object, name) = match p {
            Privilege::Shutdown => (system(SystemRight::Shutdown), "shutdown"),
            Privilege::Monitor => (system(SystemRight::Monitor), "monitor"),
            Privilege::Hypervisor => (system(SystemRight::Hypervisor), "hypervisor"),
            Privilege::Spawn => (system(SystemRight::Spawn), "spawn"),
            Privilege::Control => (system(SystemRight::Control), "control"),
            Privilege::Console => (Object::Console(Console::new()), "console"),
        };
        let id = table.insert(Handle::new(object, Rights::DEFAULT)).ok()?;
        env.push(name, id);
    }
    Some(())
}

/// Connects a freshly created instance's `needs` to their providers.
fn wire_needs(state: &State, d: &ComponentDef, process: &Arc<Process>, env: &mut RawEnv) -> Option<()> {
    for need in d.needs {
        let provider = state.provider_of(need.service);
        if need.optional && provider.is_none() {
            // No exporter in this profile: no channel, the env field is `None`.
            continue;
        }
        let (client_end, provider_end) = Channel::new_pair();
        let id = process
            .handles
            .lock()
            .insert(Handle::new(Object::Channel(client_end), Rights::DEFAULT))
            .ok()?;
        env.push(need.name, id);
        let provider_inst = provider.and_then(|p| state.slots[p].instance.as_ref());
        offer(provider_inst, &format!("connect:{}", need.service), provider_end);
    }
    Some(())
}

fn component_main(arg: usize) {
    // SAFETY: `arg` is the `Box<StartArgs>` leaked by `launch` for exactly
    // this thread, reclaimed once here.
    let args = unsafe { Box::from_raw(arg as *mut StartArgs) };
    if args.in_profile {
        mark_started();
    }
    if args.delay_ns > 0 {
        wait_before_start(args.env.component(), args.delay_ns);
    }
    let process = crate::sched::current_process().clone();
    if args.user {
        // The component's own threads run it from here on; it ends when it
        // exits or faults.
        if let Err(e) = crate::user::start(&process, &args.env) {
            log::error!("startup: cannot start {} in user mode: {e}", args.env.component());
            component_ended(&process, ExitReason::Exited(1));
        }
        return;
    }
    (args.start)(args.env);
    component_ended(&process, ExitReason::Exited(0));
}

/// Sleeps `delay_ns` on a timer of the component's own (closed again
/// before its `main` runs). If that fails, the component starts at once.
fn wait_before_start(name: &str, delay_ns: u64) {
    use starina::abi::Readiness;
    use starina::poll::Poll;
    use starina::timer::Timer;
    let waited = Timer::create().and_then(|timer| {
        let poll = Poll::create()?;
        poll.add(timer.id(), Readiness::READABLE)?;
        timer.set(delay_ns)?;
        poll.wait().map(|_| ())
    });
    match waited {
        Ok(()) => log::info!("startup: starting {name} after {} ms", delay_ns / 1_000_000),
        Err(e) => {
            log::warn!("startup: could not wait before starting {name} ({e}); starting it now")
        }
    }
}

fn launch(
    index: usize,
    start: fn(RawEnv),
    process: &Arc<Process>,
    env: RawEnv,
    delay_ns: u64,
) -> bool {
    let args = Box::new(StartArgs {
        start,
        env,
        delay_ns,
        in_profile: true,
        user: STATE.lock().as_ref().is_some_and(|s| s.profile.runs_in_user_mode(def(index))),
    });
    let arg = Box::into_raw(args) as usize;
    let cpu = spec_cpu(process);
    if let Err(e) = crate::sched::spawn_on(process, component_main, arg, cpu) {
        // SAFETY: the thread was not created; we still own the box. (Its
        // env holds plain handle numbers: dropping it closes nothing.)
        drop(unsafe { Box::from_raw(arg as *mut StartArgs) });
        log::error!("startup: cannot start {}: {e}", def(index).name);
        return false;
    }
    log::info!("{} {}", markers::COMPONENT_STARTED, def(index).name);
    true
}

/// The spec of `process`'s component or command (none for the kernel).
fn spec_of(process: &Process) -> Option<&'static ComponentDef> {
    match (&process.command, process.component) {
        (Some(link), _) => COMMANDS.get(link.index).map(|c| &c.component),
        (None, Some(index)) => COMPONENTS.get(index),
        (None, None) => None,
    }
}

/// The CPU a new thread of `process` is pinned to: the one its spec
/// names (`cpu = N`), if that CPU takes threads here.
pub fn thread_cpu(process: &Process) -> Option<usize> {
    let cpu = spec_of(process)?.cpu? as usize;
    crate::sched::cpu_takes_threads(cpu).then_some(cpu)
}

/// [`thread_cpu`] for a component's first thread: a spec CPU that does
/// not take threads here is logged (its threads then run on any CPU).
fn spec_cpu(process: &Process) -> Option<usize> {
    let def = spec_of(process)?;
    let cpu = thread_cpu(process);
    if let (Some(want), None) = (def.cpu, cpu) {
        let cpus = crate::percpu::online().count();
        log::warn!(
            "startup: {}: its spec says cpu = {want}, but this machine runs threads on CPUs 0 to {} only: its threads run on any CPU",
            def.name,
            cpus.saturating_sub(1)
        );
    }
    cpu
}

fn mark_started() {
    let mut guard = STATE.lock();
    let Some(state) = guard.as_mut() else { return };
    state.started += 1;
    if !state.ready && state.started >= state.slots.len() {
        state.ready = true;
        let profile = state.profile.name;
        drop(guard);
        log::info!(
            "{} (tsc={}) profile '{}'",
            markers::READY,
            crate::arch::cpu::rdtsc(),
            profile
        );
    }
}

/// Boots every component of `profile`, in the order it lists them.
pub fn start(profile: &'static ProfileDef) {
    let mut guard = STATE.lock();
    let mut state = State {
        profile,
        slots: Vec::new(),
        started: 0,
        ready: false,
        command_runs: alloc::vec![0; COMMANDS.len()],
    };
    for name in profile.components {
        match find_component(name) {
            Some(index) => state.slots.push(Slot {
                index,
                instance: None,
                generation: 0,
                restarts: 0,
                window: RestartWindow::default(),
                held: false,
                restart_now: false,
            }),
            // The build checks profiles; this is only a safety net.
            None => log::error!("startup: profile names unknown component '{name}'"),
        }
    }
    // Every instance (and so every supervisor channel) first, then the
    // wiring, so each provider can be offered its clients' connections
    // before anyone runs.
    let mut created = Vec::new();
    for slot in 0..state.slots.len() {
        match create_instance(&mut state, slot) {
            Some((process, env)) => created.push((slot, process, env)),
            None => {
                log::error!("startup: could not create {}", def(state.slots[slot].index).name);
                // It will not start: do not wait for it to be ready.
                state.started += 1;
            }
        }
    }
    for (slot, process, env) in created.iter_mut() {
        if wire_needs(&state, def(state.slots[*slot].index), process, env).is_none() {
            log::error!("startup: could not wire {}", process.name);
        }
    }
    let slots: Vec<usize> = state.slots.iter().map(|s| s.index).collect();
    *guard = Some(state);
    drop(guard);
    for o in profile.config {
        log::info!(
            "startup: profile '{}' sets {}'s config: {}",
            profile.name,
            o.component,
            o.describe
        );
    }
    for (slot, process, env) in created {
        let index = slots[slot];
        launch(index, entry_point(profile, index), &process, env, 0);
    }
    if state_ready_now() {
        log::info!(
            "{} (tsc={}) profile '{}'",
            markers::READY,
            crate::arch::cpu::rdtsc(),
            profile.name
        );
    }
}

/// A component's process ended (returned from main, exited, panicked,
/// faulted or was killed): close everything it held and apply its restart
/// policy; for a command, tell its job.
pub fn component_ended(process: &Arc<Process>, reason: ExitReason) {
    if !process.terminate() {
        return;
    }
    if let Some(link) = &process.command {
        command_ended(process, link, reason);
        return;
    }
    let Some(index) = process.component else {
        return;
    };
    let d = def(index);
    log_end(d.name, reason);
    let mut guard = STATE.lock();
    let Some(state) = guard.as_mut() else { return };
    let Some(slot) = state.slot_of(index) else { return };
    let is_current = state.slots[slot]
        .instance
        .as_ref()
        .is_some_and(|i| Arc::ptr_eq(&i.process, process));
    if !is_current {
        return;
    }
    state.slots[slot].instance = None;
    let s = &mut state.slots[slot];
    let delay_ns = if core::mem::take(&mut s.restart_now) {
        log::info!("restarting {} (asked to)", d.name);
        0
    } else if s.held {
        log::info!("{} stays stopped (asked to)", d.name);
        return;
    } else {
        let wants = match d.restart {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => reason.is_failure(),
            RestartPolicy::Always => true,
        };
        if !wants {
            return;
        }
        let Some(delay_ns) = decide_restart(s, d) else {
            return;
        };
        delay_ns
    };
    start_again(guard, slot, delay_ns);
}

fn log_end(name: &str, reason: ExitReason) {
    match reason {
        ExitReason::Exited(0) => log::info!("{name} exited"),
        ExitReason::Exited(code) => log::warn!("{name} exited with code {code}"),
        ExitReason::Panicked => {
            log::error!("{name} {}; its handles are closed", markers::COMPONENT_PANICKED)
        }
        ExitReason::Faulted => log::error!("{name} faulted; its handles are closed"),
        ExitReason::Killed => log::info!("{name} stopped; its handles are closed"),
    }
}

/// Starts a new instance in `slot` (whose last one has ended), gives its
/// clients fresh connections, and runs it after `delay_ns`.
fn start_again(mut guard: crate::sync::SpinLockGuard<'_, Option<State>>, slot: usize, delay_ns: u64) {
    let Some(state) = guard.as_mut() else { return };
    let index = state.slots[slot].index;
    let d = def(index);
    let Some((new_process, mut env)) = create_instance(state, slot) else {
        log::error!("startup: could not recreate {}", d.name);
        return;
    };
    if wire_needs(state, d, &new_process, &mut env).is_none() {
        log::error!("startup: could not wire {}", d.name);
    }
    // Clients of its services get a fresh connection each.
    for other in 0..state.slots.len() {
        if other == slot {
            continue;
        }
        let client = def(state.slots[other].index);
        for need in client.needs {
            if !d.exports.contains(&need.service) {
                continue;
            }
            let Some(client_inst) = state.slots[other].instance.as_ref() else {
                continue;
            };
            let (client_end, provider_end) = Channel::new_pair();
            offer(
                state.slots[slot].instance.as_ref(),
                &format!("connect:{}", need.service),
                provider_end,
            );
            offer(Some(client_inst), &format!("reconnect:{}", need.name), client_end);
        }
    }
    let start = entry_point(state.profile, index);
    drop(guard);
    launch(index, start, &new_process, env, delay_ns);
}

/// Applies the spec's restart budget to a component that wants a restart
/// and logs the decision: the delay before it starts again, or `None`.
fn decide_restart(slot: &mut Slot, d: &ComponentDef) -> Option<u64> {
    let limit = RestartLimit {
        max_restarts: d.max_restarts,
        window_s: d.restart_window_s,
    };
    let decision = slot.window.decide(limit, crate::arch::time::now_ns());
    let delay_ns = match decision {
        RestartDecision::Never => {
            log::error!(
                "{} will not be restarted: its spec allows no restarts (max_restarts = 0)",
                d.name
            );
            return None;
        }
        RestartDecision::Restart { delay_ns, nth } => {
            log::info!(
                "restarting {} in {} ms (restart {nth} of at most {} within {} s; {} since boot)",
                d.name,
                delay_ns / 1_000_000,
                d.max_restarts,
                d.restart_window_s,
                slot.restarts + 1
            );
            delay_ns
        }
        RestartDecision::HoldDown { delay_ns } => {
            log::warn!(
                "{} restarted {} times within {} s (max_restarts): holding it down; restarting {} in {} ms",
                d.name,
                d.max_restarts,
                d.restart_window_s,
                d.name,
                delay_ns / 1_000_000
            );
            delay_ns
        }
    };
    slot.restarts = slot.restarts.saturating_add(1);
    Some(delay_ns)
}

/// Whether every component is accounted for before any thread ran (an
/// empty profile, or one whose components all failed to be created).
fn state_ready_now() -> bool {
    let mut guard = STATE.lock();
    let Some(state) = guard.as_mut() else {
        return false;
    };
    if !state.ready && state.started >= state.slots.len() {
        state.ready = true;
        return true;
    }
    false
}

/// The `index`-th component of the running profile, in start order.
pub fn component_status(index: usize) -> Option<starina::abi::ComponentStatus> {
    use starina::abi::ComponentState;
    let guard = STATE.lock();
    let state = guard.as_ref()?;
    let slot = state.slots.get(index)?;
    let d = def(slot.index);
    let (memory_used, memory_limit) = crate::account::usage(crate::account::for_component(slot.index));
    let status = starina::abi::ComponentStatus {
        name: d.name,
        kind: d.kind.as_str(),
        state: if slot.instance.is_some() {
            ComponentState::Running
        } else if slot.generation == 0 {
            ComponentState::NotStarted
        } else {
            ComponentState::Stopped
        },
        instance: slot.generation,
        restarts: slot.restarts,
        max_restarts: d.max_restarts,
        memory_used,
        memory_limit,
    };
    Some(status)
}

/// Stops or restarts component `name` of the running profile (privilege
/// `control`). A stopped component stays down, whatever its restart
/// policy, until restarted; a restart of a running one ends it and starts
/// a new instance at once (its clients get fresh connections). A component
/// cannot stop itself this way (`InvalidArgument`): it returns from `main`.
pub fn control(name: &str, action: starina::abi::ComponentAction) -> Result<(), starina::abi::Error> {
    use starina::abi::ComponentAction;
    use starina::abi::Error;
    let mut guard = STATE.lock();
    let state = guard.as_mut().ok_or(Error::NotSupported)?;
    let slot = state
        .slots
        .iter()
        .position(|s| def(s.index).name == name)
        .ok_or(Error::NotFound)?;
    let s = &mut state.slots[slot];
    let running = s.instance.as_ref().map(|i| i.process.clone());
    if let Some(p) = &running {
        if Arc::ptr_eq(p, crate::sched::current_process()) {
            return Err(Error::InvalidArgument);
        }
    }
    s.held = action == ComponentAction::Stop;
    s.restart_now = action == ComponentAction::Restart && running.is_some();
    log::info!("{name}: {} (asked to)", match action {
        ComponentAction::Stop => "stopping",
        ComponentAction::Restart => "restarting",
    });
    match running {
        Some(process) => {
            drop(guard);
            component_ended(&process, ExitReason::Killed);
        }
        None if action == ComponentAction::Restart => start_again(guard, slot, 0),
        None => {}
    }
    Ok(())
}
