//! The main loop's handler: clients of `fs`, open files, the sync timer.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::block::Disk;
use starina::fs::ErrorKind;
use starina::fs::FsError;
use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::timer;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;
use starina_ext2::Fs;

use crate::device::DiskDevice;
use crate::files::OpenFile;
use crate::held::Held;
use crate::paths::Ext2;

/// What a watched object is to the server.
pub enum Watched {
    /// A client's `fs` channel, and the inodes it holds.
    Client(Held),
    /// An open file's channel.
    File(OpenFile),
    /// Writes dirty blocks back every `sync_interval_ns`.
    SyncTimer,
}

pub struct Server {
    /// The mounted file system, or why there is none.
    pub fs: Result<Ext2, String>,
    pub sync_interval_ns: u64,
}

impl Server {
    /// Mounts the disk's file system; a failure is kept as the answer to
    /// every request.
    pub fn mount(disk: Disk) -> Server {
        let info = disk.info();
        let fs = match Fs::mount(DiskDevice(disk)) {
            Ok(mut fs) => {
                let s = fs.statfs();
                log::info!(
                    "mounted ext2 ({} MiB, {} MiB free, {} of {} inodes free{})",
                    (s.blocks * u64::from(s.block_size)) >> 20,
                    (s.free_blocks * u64::from(s.block_size)) >> 20,
                    s.free_inodes,
                    s.inodes,
                    if fs.is_read_only() { ", read-only" } else { "" }
                );
                Ok(fs)
            }
            Err(e) => {
                let why = format!("the disk ({} sectors) cannot be mounted: {e}", info.sectors);
                log::error!("{why}; every request will be refused");
                Err(why)
            }
        };
        Server {
            fs,
            sync_interval_ns: 5_000_000_000,
        }
    }

    /// The file system, its clock set for this request's timestamps.
    pub fn fs(&mut self) -> Result<&mut Ext2, FsError> {
        match &mut self.fs {
            Ok(fs) => {
                fs.set_time(timer::unix_seconds().min(u64::from(u32::MAX)) as u32);
                Ok(fs)
            }
            Err(why) => Err(FsError::new(ErrorKind::Unavailable, why.clone())),
        }
    }
}

/// Sends the answer to `call_id`: `Data` with the result, or `Error`.
pub fn answer(
    cx: &mut Cx<Watched>,
    id: HandleId,
    call_id: u32,
    result: Result<Vec<u8>, FsError>,
) -> Result<(), Error> {
    match result {
        Ok(bytes) => cx.send_data(id, &starina::fs::wire::reply(call_id, &bytes)),
        Err(e) => cx.send(
            id,
            Message::Error {
                call_id,
                code: e.kind as u16,
                text: &e.text,
            },
        ),
    }
}

/// Answers a request that did not decode, if its call id could be read.
pub fn malformed(cx: &mut Cx<Watched>, id: HandleId, call_id: Option<u32>) -> Result<(), Error> {
    match call_id {
        Some(call_id) => {
            let e = FsError::new(ErrorKind::Malformed, "malformed request");
            answer(cx, id, call_id, Err(e))
        }
        None => {
            log::warn!("dropping a request too short to answer");
            Ok(())
        }
    }
}

impl Handler for Server {
    type State = Watched;

    fn connect(&mut self, cx: &mut Cx<Watched>, _service: &str, ch: Channel) -> Result<(), Error> {
        cx.add_channel(ch, Watched::Client(Held::default()))
            .map(drop)
    }

    fn message(
        &mut self,
        cx: &mut Cx<Watched>,
        id: HandleId,
        state: &mut Watched,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        match (state, msg) {
            (
                Watched::Client(_),
                Message::Open {
                    call_id,
                    uri,
                    handle: None,
                },
            ) => self.open(cx, id, call_id, uri),
            (Watched::Client(held), Message::Data(body)) => self.request(cx, id, held, body),
            (Watched::File(file), Message::Data(body)) => self.file_request(cx, id, file, body),
            (_, other) => {
                log::warn!("ignoring an unexpected {:?} message", other.kind());
                Ok(())
            }
        }
    }

    fn peer_closed(
        &mut self,
        _cx: &mut Cx<Watched>,
        _id: HandleId,
        state: Watched,
    ) -> Result<(), Error> {
        match state {
            Watched::File(file) => self.close(file),
            Watched::Client(held) => {
                if let Ok(fs) = &mut self.fs {
                    held.release_all(fs);
                }
            }
            Watched::SyncTimer => {}
        }
        Ok(())
    }

    fn timer(
        &mut self,
        cx: &mut Cx<Watched>,
        id: HandleId,
        _state: &mut Watched,
    ) -> Result<(), Error> {
        if let Ok(fs) = &mut self.fs {
            if let Err(e) = fs.sync() {
                log::error!("writing dirty blocks back failed: {e}");
            }
        }
        cx.set_timer(id, self.sync_interval_ns)
    }
}
