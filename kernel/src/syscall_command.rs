//! `command_spawn`: checks the caller's request and streams, then has
//! startup start the command (`startup::spawn_command`).
//!
//! The three stream handles stay in the caller's table until the command
//! is started; only then do they move (so on any error the caller still
//! holds, and closes, them). The same handle may be given twice (stdout and
//! stderr as one stream): the command gets a handle to it for each.

use alloc::sync::Arc;

use starina::abi::Error;
use starina::abi::HandleId;
use starina::abi::Rights;
use starina::command::Request;

use crate::handle::Handle;
use crate::handle::Object;
use crate::object::system::SystemRight;
use crate::syscall::rights;
use crate::syscall::table;
use crate::syscall::within_budget;

/// What a job handle carries: watched and used, never moved or copied (so
/// its last close, which may end a command, happens in `handle_close` or
/// at its holder's end, never inside a message queue).
const JOB_HANDLE: Rights = Rights::READ.union(Rights::WRITE).union(Rights::POLL);

pub fn spawn(spawner: HandleId, request: &[u8], stdio: [HandleId; 3]) -> Result<HandleId, Error> {
    within_budget()?;
    let request = Request::decode(request)?;
    let handles = {
        let table = table();
        table.privilege(spawner, SystemRight::Spawn)?;
        if table.room() < 1 {
            return Err(Error::HandleTableFull);
        }
        let mut handles = alloc::vec::Vec::with_capacity(3);
        for id in stdio {
            let h = table.handle(id)?;
            h.require(rights::CHANNEL_SEND_MOVED)?;
            if !matches!(h.object, Object::Channel(_)) {
                return Err(Error::WrongObjectType);
            }
            handles.push(h.clone());
        }
        handles
    };
    let Ok(stdio_handles) = <[Handle; 3]>::try_from(handles) else {
        return Err(Error::InvalidArgument);
    };
    let job = crate::startup::spawn_command(request, stdio_handles)?;
    let mut table = table();
    for id in stdio {
        // Given twice: already gone the first time.
        let _ = table.remove(id);
    }
    table.insert(Handle::new(Object::Job(Arc::clone(&job)), JOB_HANDLE))
}
