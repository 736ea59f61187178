//! Starting commands (spec privilege `spawn`) and waiting for them.

use alloc::string::String;
use alloc::vec::Vec;

use super::Request;
use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::Readiness;
use crate::channel::Channel;
use crate::handle::OwnedHandle;
use crate::poll::Poll;
use crate::syscall::kernel;

/// The right to start commands (spec privilege `spawn`).
#[derive(Debug)]
pub struct Spawner(OwnedHandle);

/// A command's three streams, as channel ends the command gets: it reads
/// `stdin` and writes `stdout` and `stderr`.
#[derive(Debug)]
pub struct Stdio {
    pub stdin: Channel,
    pub stdout: Channel,
    pub stderr: Channel,
}

/// The other ends of a fresh [`Stdio`]: what the starter keeps.
#[derive(Debug)]
pub struct StdioPeer {
    /// Write to it: the command's stdin.
    pub stdin: Channel,
    /// Read from it: the command's stdout.
    pub stdout: Channel,
    /// Read from it: the command's stderr.
    pub stderr: Channel,
}

impl Stdio {
    /// Three new channels: the command's ends and the starter's.
    pub fn pipes() -> Result<(Stdio, StdioPeer), Error> {
        let (stdin, stdin_peer) = Channel::create()?;
        let (stdout, stdout_peer) = Channel::create()?;
        let (stderr, stderr_peer) = Channel::create()?;
        Ok((
            Stdio {
                stdin,
                stdout,
                stderr,
            },
            StdioPeer {
                stdin: stdin_peer,
                stdout: stdout_peer,
                stderr: stderr_peer,
            },
        ))
    }
}

impl Spawner {
    pub fn from_handle(h: OwnedHandle) -> Spawner {
        Spawner(h)
    }

    /// Every name a command answers to, sorted.
    pub fn names(&self) -> Result<Vec<&'static str>, Error> {
        let mut names = Vec::new();
        for index in 0.. {
            match kernel().command_name(self.0.id(), index) {
                Ok(name) => names.push(name),
                Err(Error::NotFound) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(names)
    }

    /// Starts a fresh instance of command `name` with `args` after its name
    /// and the environment `vars`. `stdio`'s channels move to the command
    /// (also when the spawn fails: they are closed then).
    ///
    /// `NotFound`: no command has that name, or the running profile lacks a
    /// service it needs (the kernel log says which).
    pub fn spawn(
        &self,
        name: &str,
        args: &[String],
        vars: &[(String, String)],
        stdio: Stdio,
    ) -> Result<Job, Error> {
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(String::from(name));
        argv.extend(args.iter().cloned());
        let request = Request {
            name: String::from(name),
            args: argv,
            vars: vars.to_vec(),
        };
        self.spawn_request(&request, stdio)
    }

    /// [`Spawner::spawn`] with the request built by the caller (its
    /// `args[0]` is what the command sees as its name).
    pub fn spawn_request(&self, request: &Request, stdio: Stdio) -> Result<Job, Error> {
        let bytes = request.encode()?;
        let ids = [
            stdio.stdin.into_handle().into_raw(),
            stdio.stdout.into_handle().into_raw(),
            stdio.stderr.into_handle().into_raw(),
        ];
        match kernel().command_spawn(self.0.id(), &bytes, ids) {
            Ok(job) => Ok(Job(OwnedHandle::from_raw(job))),
            Err(e) => {
                // Whether the kernel took them or not, they are not ours now.
                for id in ids {
                    drop(OwnedHandle::from_raw(id));
                }
                Err(e)
            }
        }
    }
}

/// A running (or ended) command. Dropping it ends the command if it still
/// runs: a starter that goes leaves nothing behind.
#[derive(Debug)]
pub struct Job(OwnedHandle);

impl Job {
    /// For a poll: READABLE once the command has ended.
    pub fn id(&self) -> HandleId {
        self.0.id()
    }

    /// Its exit status, once it has ended.
    pub fn status(&self) -> Result<Option<i32>, Error> {
        kernel().job_status(self.0.id())
    }

    /// Waits for the command to end; its exit status.
    pub fn wait(&self) -> Result<i32, Error> {
        if let Some(status) = self.status()? {
            return Ok(status);
        }
        let poll = Poll::create()?;
        poll.add(self.0.id(), Readiness::READABLE)?;
        loop {
            poll.wait()?;
            if let Some(status) = self.status()? {
                return Ok(status);
            }
        }
    }

    /// Ends the command now (status 137, as for SIGKILL) if it still runs.
    pub fn kill(&self) -> Result<(), Error> {
        kernel().job_kill(self.0.id())
    }
}
