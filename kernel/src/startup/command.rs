//! Commands: components started on demand (`command_spawn`), one fresh
//! instance per run, with an argument vector, an environment and three
//! streams, ending with an exit status that their job receives.
//!
//! A command's needs are wired to the running profile's providers like a
//! component's (a required need the profile does not serve refuses the
//! spawn). All running instances of one command share one memory account,
//! its spec's budget; its count starts over when none runs.

use alloc::boxed::Box;
use alloc::sync::Arc;

use starina::abi::Error;
use starina::command::Args;
use starina::command::Request;
use starina::env::RawEnv;
use starina::message::MessageKind;

use super::grant_privileges;
use super::wire_needs;
use super::StartArgs;
use super::COMMANDS;
use super::COMPONENTS;
use super::STATE;
use crate::handle::Handle;
use crate::handle::Object;
use crate::object::channel::ChannelMessage;
use crate::object::job::Job;
use crate::process::CommandLink;
use crate::process::ExitReason;
use crate::process::Process;

/// The memory account of command `index`: after the components'.
fn account_of(index: usize) -> u8 {
    crate::account::for_component(COMPONENTS.len() + index)
}

fn find(name: &str) -> Option<usize> {
    COMMANDS.iter().position(|c| c.names.contains(&name))
}

/// The `index`-th of all command names, sorted.
pub fn command_name(index: usize) -> Option<&'static str> {
    let mut names: alloc::vec::Vec<&'static str> =
        COMMANDS.iter().flat_map(|c| c.names.iter().copied()).collect();
    names.sort_unstable();
    names.get(index).copied()
}

/// Starts command `request.name` with `stdio` (stdin, stdout, stderr:
/// channel handles, now the command's). Its job, or why not: `NotFound`
/// for an unknown name or a need the running profile does not serve.
pub fn spawn_command(request: Request, stdio: [Handle; 3]) -> Result<Arc<Job>, Error> {
    let index = find(&request.name).ok_or(Error::NotFound)?;
    let d = &COMMANDS[index].component;
    let Object::Channel(stderr) = &stdio[2].object else {
        return Err(Error::WrongObjectType);
    };
    let job = Job::new();
    let link = CommandLink {
        job: Arc::downgrade(&job),
        stderr: Arc::downgrade(stderr),
        index,
    };
    let process = Process::new_command(d.name, account_of(index), link);
    let mut env = RawEnv::new(d.name, 1);
    {
        let mut guard = STATE.lock();
        let state = guard.as_mut().ok_or(Error::NotSupported)?;
        if let Some(need) = d
            .needs
            .iter()
            .find(|n| !n.optional && state.provider_of(n.service).is_none())
        {
            log::warn!(
                "{}: needs service '{}', which profile '{}' does not run",
                request.name,
                need.service,
                state.profile.name
            );
            return Err(Error::NotFound);
        }
        {
            let mut table = process.handles.lock();
            for (name, handle) in ["stdin", "stdout", "stderr"].into_iter().zip(stdio) {
                env.push(name, table.insert(handle)?);
            }
            grant_privileges(&mut table, d, &mut env).ok_or(Error::OutOfMemory)?;
        }
        wire_needs(state, d, &process, &mut env).ok_or(Error::OutOfMemory)?;
        let runs = &mut state.command_runs[index];
        if *runs == 0 {
            let limit = d.memory_limit_mib as usize * 1024 * 1024;
            crate::account::start_instance(account_of(index), limit);
        }
        *runs += 1;
    }
    env.set_args(Args {
        argv: request.args,
        vars: request.vars,
    });
    job.attach(process.clone());
    let args = Box::new(StartArgs {
        start: d.start,
        env,
        delay_ns: 0,
        in_profile: false,
        user: false,
    });
    let arg = Box::into_raw(args) as usize;
    let cpu = super::spec_cpu(&process);
    if let Err(e) = crate::sched::spawn_on(&process, super::component_main, arg, cpu) {
        // SAFETY: the thread was not created; we still own the box.
        drop(unsafe { Box::from_raw(arg as *mut StartArgs) });
        log::warn!("{}: cannot start: {e}", request.name);
        super::component_ended(&process, ExitReason::Killed);
        return Err(e);
    }
    log::debug!("started command {} (pid {})", request.name, process.id);
    Ok(job)
}

/// A command's process ended (its handles are closed): its job learns
/// the status.
pub(super) fn command_ended(process: &Arc<Process>, link: &CommandLink, reason: ExitReason) {
    let status = reason.command_status();
    log::debug!("command {} (pid {}) ended: status {status}", process.name, process.id);
    if let Some(state) = STATE.lock().as_mut() {
        if let Some(runs) = state.command_runs.get_mut(link.index) {
            *runs = runs.saturating_sub(1);
        }
    }
    if let Some(job) = link.job.upgrade() {
        job.finish(status);
    }
}

/// Puts `text` on a command's stderr, if the process is one and its
/// stderr still has room (for a panic's message: best effort).
pub fn tell_stderr(process: &Process, text: &str) {
    let Some(stderr) = process.command.as_ref().and_then(|l| l.stderr.upgrade()) else {
        return;
    };
    let bytes = &text.as_bytes()[..text.len().min(starina::abi::MESSAGE_DATA_MAX)];
    if let Ok(msg) = ChannelMessage::new(MessageKind::Data as u8, bytes, alloc::vec::Vec::new()) {
        let _ = stderr.send(msg);
    }
}
