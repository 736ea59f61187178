//! The user-mode dispatcher's monitoring, command, control and console
//! calls: the ones whose results are strings or structs (`starina::abi::user::system`
//! says how they travel). Each checks and copies the caller's buffers
//! through `uaccess` and runs the same implementation in-kernel components
//! call.

use starina::abi::syscall::SyscallNo;
use starina::abi::user::system::component_state;
use starina::abi::user::system::COMMAND_REQUEST_MAX;
use starina::abi::user::system::CONSOLE_READ_MAX;
use starina::abi::user::system::LOG_READ_MAX;
use starina::abi::ComponentAction;
use starina::abi::ComponentState;
use starina::abi::Error;
use starina::abi::CONSOLE_WRITE_MAX;
use starina::abi::HandleId;
use starina::syscall::KernelApi;

use super::dispatch::aspace;
use super::dispatch::handle;
use super::dispatch::Out;
use super::uaccess;
use crate::arch::trap::TrapFrame;
use crate::syscall::KERNEL;

/// Call `no` if it is one of this module's; `None` otherwise.
pub fn call(no: SyscallNo, f: &TrapFrame) -> Option<Result<Out, Error>> {
    let (a0, a1, a2, a3) = (f.rdi, f.rsi, f.rdx, f.r10);
    let k = &KERNEL;
    Some(match no {
        SyscallNo::SystemComponentStatus => component_status(a0, a1, a2, a3),
        SyscallNo::SystemLogRead => log_read(a0, a1, a2, a3),
        SyscallNo::SystemMemoryStats => {
            handle(a0).and_then(|h| k.system_memory_stats(h)).map(|m| {
                [
                    m.heap_in_use as u64,
                    m.pages_free as u64,
                    m.pages_total as u64,
                    m.dma_pages as u64,
                    m.pages_kept as u64,
                ]
            })
        }
        SyscallNo::SystemCpuStats => handle(a0)
            .and_then(|h| k.system_cpu_stats(h, index(a1)))
            .map(|c| {
                [
                    c.cpu as u64,
                    c.busy_ns,
                    c.idle_ns,
                    c.switches,
                    c.preemptions,
                ]
            }),
        SyscallNo::CommandSpawn => command_spawn(f),
        SyscallNo::JobStatus => handle(a0).and_then(|h| k.job_status(h)).map(|s| match s {
            Some(code) => [1, code as u32 as u64, 0, 0, 0],
            None => [0; 5],
        }),
        SyscallNo::JobKill => handle(a0).and_then(|h| k.job_kill(h)).map(|_| [0; 5]),
        SyscallNo::ComponentControl => component_control(a0, a1, a2, a3),
        SyscallNo::CommandName => command_name(a0, a1, a2, a3),
        SyscallNo::ConsoleRead => console_read(a0, a1, a2),
        SyscallNo::ConsoleWrite => console_write(a0, a1, a2),
        _ => return None,
    })
}

/// An index from a register (past `usize` is simply not found).
fn index(raw: u64) -> usize {
    usize::try_from(raw).unwrap_or(usize::MAX)
}

fn component_status(monitor: u64, i: u64, buf: u64, buf_len: u64) -> Result<Out, Error> {
    let s = KERNEL.system_component_status(handle(monitor)?, index(i))?;
    let (name, kind) = (s.name.as_bytes(), s.kind.as_bytes());
    let len = name.len() + kind.len();
    if (buf_len as usize) < len {
        return Err(Error::BufferTooSmall);
    }
    uaccess::check_range(buf, len as u64)?;
    let mut text = alloc::vec::Vec::with_capacity(len);
    text.extend_from_slice(name);
    text.extend_from_slice(kind);
    uaccess::copy_out(aspace()?, buf, &text)?;
    let state = match s.state {
        ComponentState::Running => component_state::RUNNING,
        ComponentState::Stopped => component_state::STOPPED,
        ComponentState::NotStarted => component_state::NOT_STARTED,
    };
    Ok([
        state | (name.len() as u64) << 16 | (kind.len() as u64) << 32,
        s.instance as u64 | (s.restarts as u64) << 32,
        s.max_restarts as u64,
        s.memory_used as u64,
        s.memory_limit as u64,
    ])
}

fn log_read(monitor: u64, from: u64, buf: u64, buf_len: u64) -> Result<Out, Error> {
    let monitor = handle(monitor)?;
    let len = buf_len.min(LOG_READ_MAX);
    let a = aspace()?;
    uaccess::check_range(buf, len)?;
    uaccess::check_writable(a, buf, len as usize)?;
    let mut kbuf = alloc::vec::Vec::new();
    kbuf.try_reserve_exact(len as usize)
        .map_err(|_| Error::OutOfMemory)?;
    kbuf.resize(len as usize, 0);
    let (at, n) = KERNEL.system_log_read(monitor, from, &mut kbuf)?;
    uaccess::copy_out(a, buf, &kbuf[..n])?;
    Ok([at, n as u64, 0, 0, 0])
}

fn console_read(console: u64, buf: u64, buf_len: u64) -> Result<Out, Error> {
    let console = handle(console)?;
    let len = buf_len.min(CONSOLE_READ_MAX);
    let a = aspace()?;
    uaccess::check_range(buf, len)?;
    uaccess::check_writable(a, buf, len as usize)?;
    let mut kbuf = [0u8; CONSOLE_READ_MAX as usize];
    let n = KERNEL.console_read(console, &mut kbuf[..len as usize])?;
    uaccess::copy_out(a, buf, &kbuf[..n])?;
    Ok([n as u64, 0, 0, 0, 0])
}

fn console_write(console: u64, data: u64, len: u64) -> Result<Out, Error> {
    let console = handle(console)?;
    // The whole range must be the caller's, even if the write is cut.
    uaccess::check_range(data, len)?;
    let data = uaccess::read_vec(aspace()?, data, len.min(CONSOLE_WRITE_MAX as u64))?;
    Ok([KERNEL.console_write(console, &data)? as u64, 0, 0, 0, 0])
}

fn command_spawn(f: &TrapFrame) -> Result<Out, Error> {
    if f.rdx > COMMAND_REQUEST_MAX {
        return Err(Error::MessageTooLarge);
    }
    let spawner = handle(f.rdi)?;
    let stdio = [handle(f.r10)?, handle(f.r8)?, handle(f.r9)?];
    let request = uaccess::read_vec(aspace()?, f.rsi, f.rdx)?;
    let job: HandleId = KERNEL.command_spawn(spawner, &request, stdio)?;
    Ok([job.0 as u64, 0, 0, 0, 0])
}

fn component_control(control: u64, name: u64, len: u64, action: u64) -> Result<Out, Error> {
    let action = match action {
        0 => ComponentAction::Stop,
        1 => ComponentAction::Restart,
        _ => return Err(Error::InvalidArgument),
    };
    // Component names are short: a longer one names nothing.
    if len > 256 {
        return Err(Error::NotFound);
    }
    let name = uaccess::read_vec(aspace()?, name, len)?;
    let name = core::str::from_utf8(&name).map_err(|_| Error::InvalidArgument)?;
    KERNEL
        .component_control(handle(control)?, name, action)
        .map(|_| [0; 5])
}

fn command_name(spawner: u64, i: u64, buf: u64, buf_len: u64) -> Result<Out, Error> {
    let name = KERNEL.command_name(handle(spawner)?, index(i))?;
    if (buf_len as usize) < name.len() {
        return Err(Error::BufferTooSmall);
    }
    uaccess::check_range(buf, name.len() as u64)?;
    uaccess::copy_out(aspace()?, buf, name.as_bytes())?;
    Ok([name.len() as u64, 0, 0, 0, 0])
}
