//! The kernel side of the system-call table: one small typed function per
//! call (`object_verb`), each returning `Result<_, Error>`. In-kernel
//! components reach these through [`starina::syscall::KernelApi`]; a bad
//! request is an error returned, never a panic.

use alloc::sync::Arc;
use alloc::vec::Vec;

use starina::abi::Error;
use starina::abi::HandleId;
use starina::abi::LogLevel;
use starina::abi::Readiness;
use starina::abi::RecvInfo;
use starina::abi::Rights;
use starina::abi::MESSAGE_DATA_MAX;
use starina::abi::MESSAGE_HANDLES_MAX;
use starina::syscall::KernelApi;
use starina::syscall::ThreadEntry;

use crate::handle::Handle;
use crate::handle::Object;
use crate::object::channel::Channel;
use crate::object::channel::ChannelMessage;
use crate::object::poll::Poll;
use crate::object::timer::Timer;
use crate::object::Pollable;
use crate::process::ExitReason;
use crate::sched;

pub fn handle_close(handle: HandleId) -> Result<(), Error> {
    let removed = sched::current_process().handles.lock().remove(handle)?;
    // Polls hold what they watch; a closed handle leaves them all.
    let pollable: Option<Arc<dyn Pollable>> = match &removed.object {
        Object::Channel(c) => Some(c.clone()),
        Object::Timer(t) => Some(t.clone()),
        _ => None,
    };
    if let Some(obj) = pollable {
        let ptr = Arc::as_ptr(&obj) as *const ();
        for poll in obj.listeners().polls() {
            poll.forget(handle, ptr);
        }
    }
    // Dropped outside the table lock: a channel end's drop notifies its peer.
    drop(removed);
    Ok(())
}

pub fn handle_duplicate(handle: HandleId, rights: Rights) -> Result<HandleId, Error> {
    let mut table = sched::current_process().handles.lock();
    let h = table.get(handle)?;
    h.require(Rights::DUPLICATE)?;
    if !h.rights.contains(rights) {
        // A copy can only have fewer rights.
        return Err(Error::MissingRight);
    }
    let copy = Handle::new(h.object.clone(), rights);
    table.insert(copy)
}

pub fn channel_create() -> Result<(HandleId, HandleId), Error> {
    let (a, b) = Channel::new_pair();
    let mut table = sched::current_process().handles.lock();
    if table.room() < 2 {
        return Err(Error::HandleTableFull);
    }
    let ha = table.insert(Handle::new(Object::Channel(a), Rights::DEFAULT))?;
    match table.insert(Handle::new(Object::Channel(b), Rights::DEFAULT)) {
        Ok(hb) => Ok((ha, hb)),
        Err(e) => {
            let _ = table.remove(ha);
            Err(e)
        }
    }
}

pub fn channel_send(ch: HandleId, kind: u8, data: &[u8], handles: &[HandleId]) -> Result<(), Error> {
    if data.len() > MESSAGE_DATA_MAX {
        return Err(Error::MessageTooLarge);
    }
    if handles.len() > MESSAGE_HANDLES_MAX {
        return Err(Error::TooManyHandles);
    }
    let mut table = sched::current_process().handles.lock();
    let channel = table.channel(ch, Rights::WRITE)?.clone();

    // Check every handle to move before touching any.
    let mut moved = Vec::new();
    if !handles.is_empty() {
        moved.try_reserve_exact(handles.len()).map_err(|_| Error::OutOfMemory)?;
        for (i, &id) in handles.iter().enumerate() {
            if id == ch || handles[..i].contains(&id) {
                return Err(Error::InvalidTransfer);
            }
            let h = table.get(id)?;
            h.require(Rights::TRANSFER)?;
            if let Object::Channel(c) = &h.object {
                // Sending a channel's peer through it would make the pair
                // unreachable and never closed.
                if channel.is_peer_of(c) {
                    return Err(Error::InvalidTransfer);
                }
            }
            moved.push(h.clone());
        }
    }

    let msg = ChannelMessage::new(kind, data, moved)?;
    channel.send(msg).map_err(|(e, _msg)| e)?;
    // Delivered: the handles now belong to the message. The table's copies
    // share the objects, so removing them destroys nothing.
    for &id in handles {
        let _ = table.remove(id);
    }
    Ok(())
}

pub fn channel_recv(
    ch: HandleId,
    data: &mut [u8],
    handle_buf: &mut [HandleId],
) -> Result<RecvInfo, Error> {
    let mut table = sched::current_process().handles.lock();
    let channel = table.channel(ch, Rights::READ)?.clone();
    let msg = channel.recv(data.len(), handle_buf.len(), table.room())?;
    data[..msg.data.len()].copy_from_slice(&msg.data);
    let num_handles = msg.handles.len();
    for (slot, h) in handle_buf.iter_mut().zip(msg.handles) {
        // Cannot fail: `recv` checked the table's room.
        *slot = table.insert(h)?;
    }
    Ok(RecvInfo {
        kind: msg.kind,
        data_len: msg.data.len(),
        num_handles,
    })
}

pub fn poll_create() -> Result<HandleId, Error> {
    let poll = Poll::new();
    sched::current_process()
        .handles
        .lock()
        .insert(Handle::new(Object::Poll(poll), Rights::DEFAULT))
}

pub fn poll_add(poll: HandleId, target: HandleId, interests: Readiness) -> Result<(), Error> {
    let (poll, object) = {
        let table = sched::current_process().handles.lock();
        let poll = table.poll(poll, Rights::WRITE)?.clone();
        let h = table.get(target)?;
        let object: Arc<dyn Pollable> = match &h.object {
            Object::Channel(c) => c.clone(),
            Object::Timer(t) => t.clone(),
            _ => return Err(Error::WrongObjectType),
        };
        h.require(Rights::POLL)?;
        (poll, object)
    };
    poll.add(target, object, interests)
}

pub fn poll_remove(poll: HandleId, target: HandleId) -> Result<(), Error> {
    let poll = sched::current_process()
        .handles
        .lock()
        .poll(poll, Rights::WRITE)?
        .clone();
    poll.remove(target)
}

pub fn poll_wait(poll: HandleId) -> Result<(HandleId, Readiness), Error> {
    let poll = sched::current_process()
        .handles
        .lock()
        .poll(poll, Rights::READ)?
        .clone();
    loop {
        if let Some(ready) = poll.check()? {
            return Ok(ready);
        }
        // Register as the waiter *before* the second check, so a change
        // between the check and the block cannot be missed.
        let me = sched::current_arc();
        me.prepare_block();
        poll.set_waiter(me.clone());
        if let Some(ready) = poll.check()? {
            poll.clear_waiter();
            me.cancel_block();
            return Ok(ready);
        }
        drop(me);
        sched::block_current();
    }
}

pub fn timer_create() -> Result<HandleId, Error> {
    sched::current_process()
        .handles
        .lock()
        .insert(Handle::new(Object::Timer(Timer::new()), Rights::DEFAULT))
}

pub fn timer_set(timer: HandleId, after_ns: u64) -> Result<(), Error> {
    let timer = sched::current_process()
        .handles
        .lock()
        .timer(timer, Rights::WRITE)?
        .clone();
    timer.set(crate::arch::time::now_ns(), after_ns)?;
    crate::interrupt::rearm_timer();
    Ok(())
}

pub fn system_shutdown(system: HandleId, code: u8) -> Result<(), Error> {
    {
        let table = sched::current_process().handles.lock();
        let h = table.get(system)?;
        if !matches!(h.object, Object::System(_)) {
            return Err(Error::WrongObjectType);
        }
    }
    log::info!(
        "power off requested by {} (exit code {code})",
        sched::current_process().name
    );
    crate::arch::power_off(code)
}

/// The table in-kernel components call through.
pub struct Kernel;

impl KernelApi for Kernel {
    fn log(&self, level: LogLevel, args: core::fmt::Arguments<'_>) {
        let level = match level {
            LogLevel::Error => log::Level::Error,
            LogLevel::Warn => log::Level::Warn,
            LogLevel::Info => log::Level::Info,
            LogLevel::Debug => log::Level::Debug,
            LogLevel::Trace => log::Level::Trace,
        };
        crate::klog::write_line(level, sched::current_process().name, args);
    }

    fn time_now(&self) -> u64 {
        crate::arch::time::now_ns()
    }

    fn handle_close(&self, handle: HandleId) -> Result<(), Error> {
        handle_close(handle)
    }

    fn handle_duplicate(&self, handle: HandleId, rights: Rights) -> Result<HandleId, Error> {
        handle_duplicate(handle, rights)
    }

    fn channel_create(&self) -> Result<(HandleId, HandleId), Error> {
        channel_create()
    }

    fn channel_send(
        &self,
        ch: HandleId,
        kind: u8,
        data: &[u8],
        handles: &[HandleId],
    ) -> Result<(), Error> {
        channel_send(ch, kind, data, handles)
    }

    fn channel_recv(
        &self,
        ch: HandleId,
        data: &mut [u8],
        handles: &mut [HandleId],
    ) -> Result<RecvInfo, Error> {
        channel_recv(ch, data, handles)
    }

    fn poll_create(&self) -> Result<HandleId, Error> {
        poll_create()
    }

    fn poll_add(&self, poll: HandleId, target: HandleId, interests: Readiness) -> Result<(), Error> {
        poll_add(poll, target, interests)
    }

    fn poll_remove(&self, poll: HandleId, target: HandleId) -> Result<(), Error> {
        poll_remove(poll, target)
    }

    fn poll_wait(&self, poll: HandleId) -> Result<(HandleId, Readiness), Error> {
        poll_wait(poll)
    }

    fn timer_create(&self) -> Result<HandleId, Error> {
        timer_create()
    }

    fn timer_set(&self, timer: HandleId, after_ns: u64) -> Result<(), Error> {
        timer_set(timer, after_ns)
    }

    fn thread_spawn(&self, entry: ThreadEntry, arg: usize) -> Result<(), Error> {
        sched::spawn(sched::current_process(), entry, arg)
            .map(|_| ())
            .ok_or(Error::OutOfMemory)
    }

    fn thread_yield(&self) {
        sched::yield_current();
    }

    fn process_exit(&self, code: i32) -> ! {
        let process = sched::current_process().clone();
        crate::startup::component_ended(&process, ExitReason::Exited(code));
        sched::exit_current_thread()
    }

    fn system_shutdown(&self, system: HandleId, code: u8) -> Result<(), Error> {
        system_shutdown(system, code)
    }
}

pub static KERNEL: Kernel = Kernel;
