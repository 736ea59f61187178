//! The monitoring, command and control calls of [`super::api::UserKernel`]:
//! the ones whose results are strings or structs, passed as
//! `starina::abi::user::system` says. The kernel hands an in-kernel
//! component `&'static str` names; here the names arrive as bytes and are
//! kept once each ([`intern`]), so asking again costs no memory.

use alloc::string::String;
use alloc::vec::Vec;

use super::api::call;
use crate::abi::syscall::SyscallNo;
use crate::abi::user::system::component_state;
use crate::abi::ComponentAction;
use crate::abi::ComponentState;
use crate::abi::ComponentStatus;
use crate::abi::CpuStats;
use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::MemoryStats;

/// Names the kernel gave (component names, kinds, command names): few and
/// fixed for a boot, each kept once for the life of the process.
static NAMES: spin::Mutex<Vec<&'static str>> = spin::Mutex::new(Vec::new());

/// `text` as a `&'static str`: the kept copy if there is one.
fn intern(text: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(text);
    let mut names = NAMES.lock();
    if let Some(kept) = names.iter().find(|n| **n == text) {
        return kept;
    }
    let kept: &'static str = String::leak(text.into_owned());
    names.push(kept);
    kept
}

/// Room for a component's name and kind, or a command's name.
const NAME_BUF: usize = 512;

pub fn component_status(monitor: HandleId, index: usize) -> Result<ComponentStatus, Error> {
    let mut buf = [0u8; NAME_BUF];
    let o = call(
        SyscallNo::SystemComponentStatus,
        [
            monitor.0 as u64,
            index as u64,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
            0,
        ],
    )?;
    let name_len = ((o[0] >> 16) & 0xffff) as usize;
    let kind_len = ((o[0] >> 32) & 0xffff) as usize;
    if name_len + kind_len > buf.len() {
        return Err(Error::BufferTooSmall);
    }
    let state = match o[0] & 0xff {
        component_state::RUNNING => ComponentState::Running,
        component_state::STOPPED => ComponentState::Stopped,
        _ => ComponentState::NotStarted,
    };
    Ok(ComponentStatus {
        name: intern(&buf[..name_len]),
        kind: intern(&buf[name_len..name_len + kind_len]),
        state,
        instance: o[1] as u32,
        restarts: (o[1] >> 32) as u32,
        max_restarts: o[2] as u32,
        memory_used: o[3] as usize,
        memory_limit: o[4] as usize,
    })
}

/// Typed bytes into `out` (`WouldBlock` if none came).
pub fn console_read(console: HandleId, out: &mut [u8]) -> Result<usize, Error> {
    let o = call(
        SyscallNo::ConsoleRead,
        [console.0 as u64, out.as_mut_ptr() as u64, out.len() as u64, 0, 0, 0],
    )?;
    Ok((o[0] as usize).min(out.len()))
}

/// Writes `data` raw to the console; how many bytes it took.
pub fn console_write(console: HandleId, data: &[u8]) -> Result<usize, Error> {
    let o = call(
        SyscallNo::ConsoleWrite,
        [console.0 as u64, data.as_ptr() as u64, data.len() as u64, 0, 0, 0],
    )?;
    Ok((o[0] as usize).min(data.len()))
}

pub fn log_read(monitor: HandleId, from: u64, out: &mut [u8]) -> Result<(u64, usize), Error> {
    let o = call(
        SyscallNo::SystemLogRead,
        [
            monitor.0 as u64,
            from,
            out.as_mut_ptr() as u64,
            out.len() as u64,
            0,
            0,
        ],
    )?;
    Ok((o[0], (o[1] as usize).min(out.len())))
}

pub fn memory_stats(monitor: HandleId) -> Result<MemoryStats, Error> {
    let o = call(
        SyscallNo::SystemMemoryStats,
        [monitor.0 as u64, 0, 0, 0, 0, 0],
    )?;
    Ok(MemoryStats {
        heap_in_use: o[0] as usize,
        pages_free: o[1] as usize,
        pages_total: o[2] as usize,
        dma_pages: o[3] as usize,
        pages_kept: o[4] as usize,
    })
}

pub fn cpu_stats(monitor: HandleId, index: usize) -> Result<CpuStats, Error> {
    let o = call(
        SyscallNo::SystemCpuStats,
        [monitor.0 as u64, index as u64, 0, 0, 0, 0],
    )?;
    Ok(CpuStats {
        cpu: o[0] as u32,
        busy_ns: o[1],
        idle_ns: o[2],
        switches: o[3],
        preemptions: o[4],
    })
}

pub fn command_spawn(
    spawner: HandleId,
    request: &[u8],
    stdio: [HandleId; 3],
) -> Result<HandleId, Error> {
    let o = call(
        SyscallNo::CommandSpawn,
        [
            spawner.0 as u64,
            request.as_ptr() as u64,
            request.len() as u64,
            stdio[0].0 as u64,
            stdio[1].0 as u64,
            stdio[2].0 as u64,
        ],
    )?;
    Ok(HandleId(o[0] as u32))
}

pub fn job_status(job: HandleId) -> Result<Option<i32>, Error> {
    let o = call(SyscallNo::JobStatus, [job.0 as u64, 0, 0, 0, 0, 0])?;
    Ok((o[0] == 1).then_some(o[1] as u32 as i32))
}

pub fn job_kill(job: HandleId) -> Result<(), Error> {
    call(SyscallNo::JobKill, [job.0 as u64, 0, 0, 0, 0, 0]).map(drop)
}

pub fn component_control(
    control: HandleId,
    name: &str,
    action: ComponentAction,
) -> Result<(), Error> {
    let action = match action {
        ComponentAction::Stop => 0,
        ComponentAction::Restart => 1,
    };
    call(
        SyscallNo::ComponentControl,
        [
            control.0 as u64,
            name.as_ptr() as u64,
            name.len() as u64,
            action,
            0,
            0,
        ],
    )
    .map(drop)
}

pub fn command_name(spawner: HandleId, index: usize) -> Result<&'static str, Error> {
    let mut buf = [0u8; NAME_BUF];
    let o = call(
        SyscallNo::CommandName,
        [
            spawner.0 as u64,
            index as u64,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
            0,
        ],
    )?;
    let len = (o[0] as usize).min(buf.len());
    Ok(intern(&buf[..len]))
}
