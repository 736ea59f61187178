//! What startup hands a component: its handles, by the names its spec gives
//! them. The build turns each spec into a typed `Env` struct (see
//! `starina-spec`), whose `from_raw` takes handles out of a [`RawEnv`]; a
//! component never looks anything up by name itself.

use alloc::vec::Vec;
use core::fmt;

use crate::channel::Channel;
use crate::abi::HandleId;
use crate::handle::OwnedHandle;
use crate::driver::Device;
use crate::system::Monitor;
use crate::system::Shutdown;

/// What a component's `main` may return: `()`, or `Result<(), E>` so that
/// setup can use `?`. An `Err` is logged (tagged with the component) and
/// ends the component as a failure, so its spec's restart policy applies.
pub trait MainReturn {
    fn finish(self);
}

impl MainReturn for () {
    fn finish(self) {}
}

impl<E: fmt::Display> MainReturn for Result<(), E> {
    fn finish(self) {
        if let Err(e) = self {
            log::error!("stopped: {e}");
            crate::thread::exit(1);
        }
    }
}

/// The handles startup prepared for one component instance.
#[derive(Debug)]
pub struct RawEnv {
    component: &'static str,
    instance: u32,
    /// Plain handle numbers in the component's table: they become owned
    /// (closed on drop) only when the component takes them, in its own
    /// process. Dropping a `RawEnv` elsewhere (startup failing half-way)
    /// closes nothing; the handles go with the process.
    handles: Vec<(&'static str, HandleId)>,
    /// A command's arguments and environment (empty for other components).
    args: crate::command::Args,
}

/// Startup and the generated `Env` disagree: a build/wiring bug, reported
/// with the component and the entry's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub component: &'static str,
    pub name: &'static str,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "component '{}': startup provided no handle named '{}' (spec and wiring disagree)",
            self.component, self.name
        )
    }
}

impl RawEnv {
    pub fn new(component: &'static str, instance: u32) -> RawEnv {
        RawEnv {
            component,
            instance,
            handles: Vec::new(),
            args: crate::command::Args::default(),
        }
    }

    /// Sets a command's arguments and environment.
    pub fn set_args(&mut self, args: crate::command::Args) {
        self.args = args;
    }

    /// The name a command was called by (its `argv[0]`).
    pub fn command_name(&self) -> alloc::string::String {
        alloc::string::String::from(self.args.name())
    }

    /// A command's arguments and environment (taken once).
    pub fn take_args(&mut self) -> crate::command::Args {
        core::mem::take(&mut self.args)
    }

    pub fn push(&mut self, name: &'static str, handle: HandleId) {
        self.handles.push((name, handle));
    }

    /// The named handles startup put in (for the kernel to hand them to a
    /// user-mode component).
    pub fn handles(&self) -> &[(&'static str, HandleId)] {
        &self.handles
    }

    /// The component's name as its spec gives it.
    pub fn component(&self) -> &'static str {
        self.component
    }

    /// 1 for the first start, 2 after the first restart, and so on.
    pub fn instance(&self) -> u32 {
        self.instance
    }

    pub fn take_handle(&mut self, name: &'static str) -> Result<OwnedHandle, EnvError> {
        match self.handles.iter().position(|(n, _)| *n == name) {
            Some(i) => Ok(OwnedHandle::from_raw(self.handles.swap_remove(i).1)),
            None => Err(EnvError {
                component: self.component,
                name,
            }),
        }
    }

    pub fn take_channel(&mut self, name: &'static str) -> Result<Channel, EnvError> {
        self.take_handle(name).map(Channel::from_handle)
    }

    /// The channel of an optional need: `None` when startup provided none
    /// (no component of the running profile exports its service).
    pub fn take_optional_channel(&mut self, name: &'static str) -> Option<Channel> {
        self.take_handle(name).ok().map(Channel::from_handle)
    }

    pub fn take_hypervisor(&mut self) -> Result<crate::hypervisor::Hypervisor, EnvError> {
        self.take_handle("hypervisor")
            .map(crate::hypervisor::Hypervisor::from_handle)
    }

    pub fn take_shutdown(&mut self) -> Result<Shutdown, EnvError> {
        self.take_handle("shutdown").map(Shutdown::from_handle)
    }

    pub fn take_console(&mut self) -> Result<crate::console::Console, EnvError> {
        self.take_handle("console")
            .map(crate::console::Console::from_handle)
    }

    pub fn take_monitor(&mut self) -> Result<Monitor, EnvError> {
        self.take_handle("monitor").map(Monitor::from_handle)
    }

    /// A command's stream it reads (`stdin`).
    pub fn take_input(&mut self, name: &'static str) -> Result<crate::command::Input, EnvError> {
        self.take_channel(name).map(crate::command::Input::new)
    }

    /// A command's stream it writes (`stdout`, `stderr`).
    pub fn take_output(&mut self, name: &'static str) -> Result<crate::command::Output, EnvError> {
        self.take_channel(name).map(crate::command::Output::new)
    }

    /// A second handle to the stream `name` (without taking it): where a
    /// command's entry point reports the error its `main` returns.
    pub fn duplicate_output(&self, name: &'static str) -> Option<crate::command::Output> {
        let (_, id) = self.handles.iter().find(|(n, _)| *n == name)?;
        let dup = crate::syscall::kernel()
            .handle_duplicate(*id, crate::abi::Rights::DEFAULT)
            .ok()?;
        Some(crate::command::Output::new(Channel::from_handle(
            OwnedHandle::from_raw(dup),
        )))
    }

    pub fn take_spawner(&mut self) -> Result<crate::command::Spawner, EnvError> {
        self.take_handle("spawn").map(crate::command::Spawner::from_handle)
    }

    pub fn take_control(&mut self) -> Result<crate::system::Control, EnvError> {
        self.take_handle("control").map(crate::system::Control::from_handle)
    }

    pub fn take_device(&mut self, name: &'static str) -> Result<Device, EnvError> {
        self.take_handle(name).map(Device::from_handle)
    }

    /// The device of an optional `[devices]` entry: `None` when startup
    /// provided none (no free device matched).
    pub fn take_optional_device(&mut self, name: &'static str) -> Option<Device> {
        self.take_handle(name).ok().map(Device::from_handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::MessageBuffer;
    use crate::fake_kernel::FakeKernel;
    use crate::message::Message;

    #[test]
    fn an_optional_channel_is_the_handle_startup_pushed_or_none() {
        FakeKernel::install();
        let (ours, theirs) = Channel::create().unwrap();
        let mut raw = RawEnv::new("demo", 1);
        raw.push("net", theirs.into_handle().into_raw());

        assert!(raw.take_optional_channel("stats").is_none());
        let net = raw.take_optional_channel("net").expect("pushed");
        ours.send_data(b"hi").unwrap();
        let mut buf = MessageBuffer::new();
        match net.recv_within(&mut buf, 10) {
            Ok(Some(Message::Data(d))) => assert_eq!(d, b"hi"),
            other => panic!("expected the message, got {other:?}"),
        }
        // Taken once: gone from the env.
        assert!(raw.take_optional_channel("net").is_none());
    }

    #[test]
    fn an_optional_device_is_the_handle_startup_pushed_or_none() {
        let fake = FakeKernel::install();
        let id = fake.add_device();
        let mut raw = RawEnv::new("demo", 1);
        raw.push("nic", id);

        assert!(raw.take_optional_device("disk").is_none());
        let nic = raw.take_optional_device("nic").expect("pushed");
        assert_eq!(nic.id(), id);
        assert!(raw.take_optional_device("nic").is_none());
    }
}
