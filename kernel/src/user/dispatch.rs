//! The system-call dispatcher for user mode: decodes the call number and
//! registers of a `syscall` (see `starina::abi::user` for the ABI), copies
//! every buffer in through `uaccess`, runs the same implementation
//! in-kernel components call ([`crate::syscall::KERNEL`]), and copies the
//! results out (device calls: [`super::device`]; monitoring, commands and
//! control and the console: `dispatch_system`; the hypervisor:
//! `dispatch_vm`).

use alloc::vec::Vec;

use starina::abi::syscall::SyscallNo;
use starina::abi::user::event;
use starina::abi::user::SendReceivedWaitArgs;
use starina::abi::user::SendWaitArgs;
use starina::abi::user::UserCall;
use starina::abi::user::UserSlice;
use starina::abi::Error;
use starina::abi::HandleId;
use starina::abi::LogLevel;
use starina::abi::PollEvent;
use starina::abi::Readiness;
use starina::abi::Rights;
use starina::abi::MESSAGE_DATA_MAX;
use starina::abi::MESSAGE_HANDLES_MAX;
use starina::syscall::KernelApi;

use super::aspace::AddressSpace;
use super::uaccess;
use crate::arch::trap::TrapFrame;
use crate::sched;
use crate::syscall::KERNEL;

/// The longest log line taken from user mode; longer ones are cut.
const LOG_MAX: u64 = 4096;

/// The results a call leaves in `rdx`, `r8`, `r9`, `r10`, `rsi`.
pub(super) type Out = [u64; 5];

pub fn dispatch(frame: &mut TrapFrame) {
    let result = sched::in_kernel(|| call(frame));
    let (status, out) = match result {
        Ok(out) => (0, out),
        Err(e) => (e.as_raw() as u64, [0; 5]),
    };
    frame.rax = status;
    [frame.rdx, frame.r8, frame.r9, frame.r10, frame.rsi] = out;
}

pub(super) fn aspace() -> Result<&'static AddressSpace, Error> {
    sched::current_process()
        .aspace
        .get()
        .ok_or(Error::NotSupported)
}

pub(super) fn handle(raw: u64) -> Result<HandleId, Error> {
    u32::try_from(raw)
        .map(HandleId)
        .map_err(|_| Error::InvalidHandle)
}

fn call(f: &TrapFrame) -> Result<Out, Error> {
    let raw = u16::try_from(f.rax).map_err(|_| Error::NotSupported)?;
    if let Some(user) = UserCall::from_raw(raw) {
        return user_call(user, f);
    }
    let no = SyscallNo::from_raw(raw).ok_or(Error::NotSupported)?;
    let (a0, a1, a2, a3, a4) = (f.rdi, f.rsi, f.rdx, f.r10, f.r8);
    let k = &KERNEL;
    match no {
        SyscallNo::Log => log(a0, a1, a2).map(|_| [0; 5]),
        SyscallNo::TimeNow => Ok([k.time_now(), 0, 0, 0, 0]),
        SyscallNo::TimeUnix => Ok([k.time_unix(), 0, 0, 0, 0]),
        SyscallNo::HandleClose => k.handle_close(handle(a0)?).map(|_| [0; 5]),
        SyscallNo::HandleDuplicate => {
            let rights = Rights::from_bits(a1 as u32).ok_or(Error::InvalidArgument)?;
            k.handle_duplicate(handle(a0)?, rights)
                .map(|h| [h.0 as u64, 0, 0, 0, 0])
        }
        SyscallNo::ChannelCreate => k
            .channel_create()
            .map(|(a, b)| [a.0 as u64, b.0 as u64, 0, 0, 0]),
        SyscallNo::ChannelSend => {
            let (data, handles) = send_parts(
                UserSlice { ptr: a2, len: a3 },
                UserSlice { ptr: a4, len: f.r9 },
            )?;
            k.channel_send(handle(a0)?, a1 as u8, &data, &handles)
                .map(|_| [0; 5])
        }
        SyscallNo::ChannelRecv => recv(
            handle(a0)?,
            UserSlice { ptr: a1, len: a2 },
            UserSlice { ptr: a3, len: a4 },
        ),
        SyscallNo::PollCreate => k.poll_create().map(|h| [h.0 as u64, 0, 0, 0, 0]),
        SyscallNo::PollAdd => {
            let interests = Readiness::from_bits(a2 as u32).ok_or(Error::InvalidArgument)?;
            k.poll_add(handle(a0)?, handle(a1)?, interests)
                .map(|_| [0; 5])
        }
        SyscallNo::PollRemove => k.poll_remove(handle(a0)?, handle(a1)?).map(|_| [0; 5]),
        SyscallNo::PollWait => k
            .poll_wait(handle(a0)?)
            .map(|(h, r)| [h.0 as u64 | (r.bits() as u64) << 32, 0, 0, 0, 0]),
        SyscallNo::PollWaitRecv => {
            let poll = handle(a0)?;
            let (buf, handles) = (
                UserSlice { ptr: a1, len: a2 },
                UserSlice { ptr: a3, len: a4 },
            );
            with_receive(
                buf,
                handles,
                |data, hs| Ok(k.poll_wait_recv(poll, data, hs)),
            )
            .and_then(|r| r)
        }
        SyscallNo::TimerCreate => k.timer_create().map(|h| [h.0 as u64, 0, 0, 0, 0]),
        SyscallNo::TimerSet => k.timer_set(handle(a0)?, a1).map(|_| [0; 5]),
        SyscallNo::ThreadYield => {
            k.thread_yield();
            Ok([0; 5])
        }
        SyscallNo::ProcessExit => k.process_exit(a0 as i32),
        SyscallNo::HostClock => {
            let c = k.host_clock();
            Ok([
                c.tsc,
                c.ns,
                c.ns_per_tsc_fp,
                c.unix_ns_at_zero,
                c.generation,
            ])
        }
        SyscallNo::ThreadPin => {
            // `rdi` = 1: pin to CPU `rsi`; 0: unpin.
            let cpu = match a0 {
                0 => None,
                1 => Some(usize::try_from(a1).unwrap_or(usize::MAX)),
                _ => return Err(Error::InvalidArgument),
            };
            k.thread_pin(cpu).map(|_| [0; 5])
        }
        SyscallNo::SystemShutdown => k.system_shutdown(handle(a0)?, a1 as u8).map(|_| [0; 5]),
        SyscallNo::ProcessId => Ok([k.process_id(), 0, 0, 0, 0]),
        SyscallNo::ChannelSendPollWaitRecv => send_wait(a0),
        SyscallNo::ChannelSendReceivedPollWaitRecv => send_received_wait(a0),
        _ => super::device::call(no, [a0, a1, a2, a3])
            .or_else(|| super::dispatch_system::call(no, f))
            .or_else(|| super::dispatch_vm::call(no, f))
            .unwrap_or(Err(Error::NotSupported)),
    }
}

fn user_call(call: UserCall, f: &TrapFrame) -> Result<Out, Error> {
    match call {
        UserCall::MemoryMap => {
            crate::syscall::within_budget()?;
            let pages = usize::try_from(f.rdi).map_err(|_| Error::InvalidArgument)?;
            aspace()?.map_anonymous(pages).map(|at| [at, 0, 0, 0, 0])
        }
        UserCall::ThreadStart => {
            crate::syscall::within_budget()?;
            let (entry, arg) = (f.rdi, f.rsi);
            uaccess::check_range(entry, 1)?;
            aspace()?.start_thread(|rsp| {
                sched::spawn_user(sched::current_process(), entry, rsp, arg).map(|t| t.id)
            })?;
            Ok([0; 5])
        }
        UserCall::ThreadExit => {
            // Off its user stack for good: the next thread may take it.
            aspace()?.thread_ended(sched::current().id);
            sched::exit_current_thread()
        }
    }
}

fn log(level: u64, ptr: u64, len: u64) -> Result<(), Error> {
    let level = match level {
        1 => LogLevel::Error,
        2 => LogLevel::Warn,
        3 => LogLevel::Info,
        4 => LogLevel::Debug,
        5 => LogLevel::Trace,
        _ => return Err(Error::InvalidArgument),
    };
    // The whole range must be the caller's, even if the line is cut.
    uaccess::check_range(ptr, len)?;
    let text = uaccess::read_vec(aspace()?, ptr, len.min(LOG_MAX))?;
    let text = alloc::string::String::from_utf8_lossy(&text);
    KERNEL.log(level, format_args!("{text}"));
    Ok(())
}

/// A message's body and handles from user memory, bounded before any copy.
fn send_parts(data: UserSlice, handles: UserSlice) -> Result<(Vec<u8>, Handles), Error> {
    if data.len > MESSAGE_DATA_MAX as u64 {
        return Err(Error::MessageTooLarge);
    }
    if handles.len > MESSAGE_HANDLES_MAX as u64 {
        return Err(Error::TooManyHandles);
    }
    let a = aspace()?;
    let body = match data.len {
        0 => Vec::new(),
        len => uaccess::read_vec(a, data.ptr, len)?,
    };
    let mut ids = Handles {
        ids: [HandleId(0); MESSAGE_HANDLES_MAX],
        len: handles.len as usize,
    };
    if ids.len > 0 {
        let mut raw = [0u8; 4 * MESSAGE_HANDLES_MAX];
        uaccess::copy_in(a, handles.ptr, &mut raw[..ids.len * 4])?;
        for (id, c) in ids.ids.iter_mut().zip(raw.chunks_exact(4)) {
            *id = HandleId(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
    }
    Ok((body, ids))
}

/// A message's handles, copied in.
struct Handles {
    ids: [HandleId; MESSAGE_HANDLES_MAX],
    len: usize,
}

impl core::ops::Deref for Handles {
    type Target = [HandleId];

    fn deref(&self) -> &[HandleId] {
        &self.ids[..self.len]
    }
}

/// A receive buffer of the calling process, given back when dropped
/// (also when the call returns early because the process ends).
struct Buffer<'a> {
    aspace: &'a AddressSpace,
    data: Option<alloc::boxed::Box<[u8]>>,
}

impl<'a> Buffer<'a> {
    fn take(aspace: &'a AddressSpace) -> Result<Buffer<'a>, Error> {
        Ok(Buffer {
            aspace,
            data: Some(aspace.take_buffer()?),
        })
    }

    fn get(&mut self, len: usize) -> &mut [u8] {
        match self.data.as_mut() {
            Some(d) => &mut d[..len],
            None => &mut [],
        }
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.data.take() {
            self.aspace.give_back(d);
        }
    }
}

/// Runs a receiving call `f` on a kernel buffer as large as the caller's
/// (checked writable in user memory first, so a received message is never
/// lost to a bad buffer), and copies what it received out.
fn with_receive(
    buf: UserSlice,
    handles: UserSlice,
    f: impl FnOnce(&mut [u8], &mut [HandleId]) -> Result<Result<PollEvent, Error>, Error>,
) -> Result<Result<Out, Error>, Error> {
    let a = aspace()?;
    let data_len = buf.len.min(MESSAGE_DATA_MAX as u64) as usize;
    let handles_len = handles.len.min(MESSAGE_HANDLES_MAX as u64) as usize;
    uaccess::check_writable_pair(a, (buf.ptr, data_len), (handles.ptr, handles_len * 4))?;
    let mut kbuf = Buffer::take(a)?;
    let mut hs = [HandleId(0); MESSAGE_HANDLES_MAX];
    let event = match f(kbuf.get(data_len), &mut hs[..handles_len])? {
        Ok(event) => event,
        Err(e) => return Ok(Err(e)),
    };
    let word = match event.received {
        None => event::recv_word(event::RECV_NONE, 0, 0, 0),
        Some(Err(e)) => event::recv_word(event::RECV_ERR, 0, 0, e.as_raw()),
        Some(Ok(info)) => {
            copy_received(
                a,
                buf.ptr,
                kbuf.get(info.data_len),
                handles.ptr,
                &hs[..info.num_handles],
            )?;
            event::recv_word(event::RECV_OK, info.kind, info.num_handles, 0)
        }
    };
    let data_len = match event.received {
        Some(Ok(info)) => info.data_len as u64,
        _ => 0,
    };
    Ok(Ok([
        event.id.0 as u64 | (event.ready.bits() as u64) << 32,
        word,
        data_len,
        0,
        0,
    ]))
}

fn copy_received(
    a: &AddressSpace,
    buf: u64,
    data: &[u8],
    handles: u64,
    ids: &[HandleId],
) -> Result<(), Error> {
    if !data.is_empty() {
        uaccess::copy_out(a, buf, data)?;
    }
    if ids.is_empty() {
        return Ok(());
    }
    let mut raw = [0u8; 4 * MESSAGE_HANDLES_MAX];
    for (slot, h) in raw.chunks_exact_mut(4).zip(ids) {
        slot.copy_from_slice(&h.0.to_le_bytes());
    }
    uaccess::copy_out(a, handles, &raw[..ids.len() * 4])
}

fn recv(ch: HandleId, buf: UserSlice, handles: UserSlice) -> Result<Out, Error> {
    let a = aspace()?;
    let data_len = buf.len.min(MESSAGE_DATA_MAX as u64) as usize;
    let handles_len = handles.len.min(MESSAGE_HANDLES_MAX as u64) as usize;
    uaccess::check_writable_pair(a, (buf.ptr, data_len), (handles.ptr, handles_len * 4))?;
    let mut kbuf = Buffer::take(a)?;
    let mut hs = [HandleId(0); MESSAGE_HANDLES_MAX];
    let info = KERNEL.channel_recv(ch, kbuf.get(data_len), &mut hs[..handles_len])?;
    copy_received(
        a,
        buf.ptr,
        kbuf.get(info.data_len),
        handles.ptr,
        &hs[..info.num_handles],
    )?;
    Ok([
        info.data_len as u64,
        info.kind as u64 | (info.num_handles as u64) << 8,
        0,
        0,
        0,
    ])
}

/// The combined calls' result: the outer error is the send's; the wait's
/// own error goes in `r10` (the results in the other registers then 0).
fn wait_result(r: Result<Result<Out, Error>, Error>) -> Result<Out, Error> {
    match r? {
        Ok(out) => Ok(out),
        Err(e) => Ok([0, 0, 0, e.as_raw() as u64, 0]),
    }
}

fn send_wait(args: u64) -> Result<Out, Error> {
    let args: SendWaitArgs = uaccess::read_struct(aspace()?, args)?;
    let (data, handles) = send_parts(args.data, args.handles)?;
    let (ch, poll) = (handle(args.ch as u64)?, handle(args.poll as u64)?);
    wait_result(with_receive(args.buf, args.handle_buf, |buf, hs| {
        KERNEL.channel_send_poll_wait_recv(ch, args.kind, &data, &handles, poll, buf, hs)
    }))
}

fn send_received_wait(args: u64) -> Result<Out, Error> {
    let args: SendReceivedWaitArgs = uaccess::read_struct(aspace()?, args)?;
    let (ch, poll) = (handle(args.ch as u64)?, handle(args.poll as u64)?);
    // The bytes to send are the user buffer's own (received earlier):
    // copied in, then sent, then the wait receives into the buffer.
    if args.start > args.end || args.end > args.buf.len {
        return Err(Error::InvalidArgument);
    }
    let data = UserSlice {
        ptr: args
            .buf
            .ptr
            .checked_add(args.start)
            .ok_or(Error::BadAddress)?,
        len: args.end - args.start,
    };
    let (data, _) = send_parts(data, UserSlice::default())?;
    wait_result(with_receive(args.buf, args.handle_buf, |buf, hs| {
        KERNEL.channel_send_poll_wait_recv(ch, args.kind, &data, &[], poll, buf, hs)
    }))
}
