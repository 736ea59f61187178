//! Per-process handle tables: handle numbers to (object, rights).

use alloc::sync::Arc;
use alloc::vec::Vec;

use starina::abi::Error;
use starina::abi::HandleId;
use starina::abi::Rights;
use starina::abi::HANDLE_TABLE_MAX;

use crate::object::channel::Channel;
use crate::object::console::Console;
use crate::object::poll::Poll;
use crate::object::system::SystemObject;
use crate::object::system::SystemRight;
use crate::object::timer::Timer;

/// A reference to a kernel object, of one of the types a handle can name.
#[derive(Clone)]
pub enum Object {
    Channel(Arc<Channel>),
    Poll(Arc<Poll>),
    Timer(Arc<Timer>),
    System(Arc<SystemObject>),
    Console(Arc<Console>),
    #[cfg(not(test))]
    Device(Arc<crate::object::device::DeviceObject>),
    #[cfg(not(test))]
    Interrupt(Arc<crate::object::interrupt::Interrupt>),
    #[cfg(not(test))]
    GuestRam(Arc<crate::object::vm::GuestRam>),
    #[cfg(not(test))]
    Vcpu(Arc<crate::object::vm::Vcpu>),
    #[cfg(not(test))]
    Dma(Arc<crate::object::dma::DmaMemory>),
    #[cfg(not(test))]
    Job(Arc<crate::object::job::Job>),
}

impl Object {
    pub fn type_name(&self) -> &'static str {
        match self {
            Object::Channel(_) => "channel",
            Object::Poll(_) => "poll",
            Object::Timer(_) => "timer",
            Object::System(_) => "system",
            Object::Console(_) => "console",
            #[cfg(not(test))]
            Object::Device(_) => "device",
            #[cfg(not(test))]
            Object::Interrupt(_) => "interrupt",
            #[cfg(not(test))]
            Object::GuestRam(_) => "guest RAM",
            #[cfg(not(test))]
            Object::Vcpu(_) => "vCPU",
            #[cfg(not(test))]
            Object::Dma(_) => "DMA memory",
            #[cfg(not(test))]
            Object::Job(_) => "job",
        }
    }

    /// Whether it is DMA memory (freed last when a process ends, and only
    /// by `dma_free` before that).
    pub fn is_dma(&self) -> bool {
        #[cfg(not(test))]
        if let Object::Dma(_) = self {
            return true;
        }
        false
    }

    /// The object as something a poll can watch, if it is one.
    pub fn as_pollable(&self) -> Option<Arc<dyn crate::object::Pollable>> {
        match self {
            Object::Channel(c) => Some(c.clone()),
            Object::Timer(t) => Some(t.clone()),
            Object::Console(c) => Some(c.clone()),
            #[cfg(not(test))]
            Object::Interrupt(i) => Some(i.clone()),
            #[cfg(not(test))]
            Object::Job(j) => Some(j.clone()),
            _ => None,
        }
    }
}

/// A kernel object type a handle can name: how to find it in an [`Object`].
/// [`HandleTable::get`] looks handles up by it, so every call checks type
/// and rights the same way.
pub trait KernelObject {
    /// The object of this type, if `object` is one.
    fn from_object(object: &Object) -> Option<&Arc<Self>>;
}

/// Implements [`KernelObject`] for the type held by `Object::$variant`.
macro_rules! kernel_object {
    ($($(#[$attr:meta])* $variant:ident => $ty:ty;)*) => {
        $(
            $(#[$attr])*
            impl KernelObject for $ty {
                fn from_object(object: &Object) -> Option<&Arc<Self>> {
                    match object {
                        Object::$variant(o) => Some(o),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }
            }
        )*
    };
}

kernel_object! {
    Channel => Channel;
    Poll => Poll;
    Timer => Timer;
    System => SystemObject;
    Console => Console;
    #[cfg(not(test))]
    Device => crate::object::device::DeviceObject;
    #[cfg(not(test))]
    Interrupt => crate::object::interrupt::Interrupt;
    #[cfg(not(test))]
    GuestRam => crate::object::vm::GuestRam;
    #[cfg(not(test))]
    Vcpu => crate::object::vm::Vcpu;
    #[cfg(not(test))]
    Dma => crate::object::dma::DmaMemory;
    #[cfg(not(test))]
    Job => crate::object::job::Job;
}

#[derive(Clone)]
pub struct Handle {
    pub object: Object,
    pub rights: Rights,
}

impl Handle {
    pub fn new(object: Object, rights: Rights) -> Handle {
        Handle { object, rights }
    }

    pub fn require(&self, rights: Rights) -> Result<(), Error> {
        if self.rights.contains(rights) {
            Ok(())
        } else {
            Err(Error::MissingRight)
        }
    }
}

/// Handle numbers are slot index + 1, so 0 is never valid.
#[derive(Default)]
pub struct HandleTable {
    slots: Vec<Option<Handle>>,
    free: Vec<u32>,
    count: usize,
}

impl HandleTable {
    pub const fn new() -> HandleTable {
        HandleTable {
            slots: Vec::new(),
            free: Vec::new(),
            count: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many more handles fit.
    pub fn room(&self) -> usize {
        HANDLE_TABLE_MAX - self.count
    }

    pub fn insert(&mut self, handle: Handle) -> Result<HandleId, Error> {
        if self.count >= HANDLE_TABLE_MAX {
            return Err(Error::HandleTableFull);
        }
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.slots.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
                self.free.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.slots[index] = Some(handle);
        self.count += 1;
        Ok(HandleId(index as u32 + 1))
    }

    fn index(id: HandleId) -> Option<usize> {
        (id.0 as usize).checked_sub(1)
    }

    /// The handle `id`, whatever it names.
    pub fn handle(&self, id: HandleId) -> Result<&Handle, Error> {
        Self::index(id)
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.as_ref())
            .ok_or(Error::InvalidHandle)
    }

    pub fn remove(&mut self, id: HandleId) -> Result<Handle, Error> {
        let index = Self::index(id).ok_or(Error::InvalidHandle)?;
        let handle = self
            .slots
            .get_mut(index)
            .and_then(|s| s.take())
            .ok_or(Error::InvalidHandle)?;
        self.count -= 1;
        // `free` has room: it was reserved when the slot was created.
        self.free.push(index as u32);
        Ok(handle)
    }

    /// Empties the table, returning every handle (to be dropped by the
    /// caller outside the lock: dropping may notify peers).
    pub fn take_all(&mut self) -> Vec<Handle> {
        self.free.clear();
        self.count = 0;
        core::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect()
    }

    /// Every handle in the table.
    pub fn iter(&self) -> impl Iterator<Item = &Handle> {
        self.slots.iter().flatten()
    }

    /// The object of type `T` that `id` names, if the handle has `rights`.
    /// The one lookup every system call uses: [`Error::InvalidHandle`] if
    /// `id` names nothing, [`Error::WrongObjectType`] if it names another
    /// type, [`Error::MissingRight`] if the handle lacks a right.
    pub fn get<T: KernelObject>(&self, id: HandleId, rights: Rights) -> Result<&Arc<T>, Error> {
        let h = self.handle(id)?;
        let object = T::from_object(&h.object).ok_or(Error::WrongObjectType)?;
        h.require(rights)?;
        Ok(object)
    }

    /// Checks that `id` names the system object granting `privilege`
    /// (`MissingRight` for another privilege's object).
    pub fn privilege(&self, id: HandleId, privilege: SystemRight) -> Result<(), Error> {
        let system = self.get::<SystemObject>(id, Rights::empty())?;
        if system.right != privilege {
            return Err(Error::MissingRight);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer_handle(rights: Rights) -> Handle {
        Handle::new(Object::Timer(Timer::new()), rights)
    }

    #[test]
    fn ids_start_at_one_and_are_reused() {
        let mut t = HandleTable::new();
        let a = t.insert(timer_handle(Rights::all())).unwrap();
        let b = t.insert(timer_handle(Rights::all())).unwrap();
        assert_eq!(a, HandleId(1));
        assert_eq!(b, HandleId(2));
        t.remove(a).unwrap();
        assert_eq!(t.insert(timer_handle(Rights::all())).unwrap(), HandleId(1));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn invalid_ids_are_errors() {
        let mut t = HandleTable::new();
        assert_eq!(t.handle(HandleId(0)).err(), Some(Error::InvalidHandle));
        assert_eq!(t.handle(HandleId(7)).err(), Some(Error::InvalidHandle));
        assert_eq!(
            t.remove(HandleId(u32::MAX)).err(),
            Some(Error::InvalidHandle)
        );
        let a = t.insert(timer_handle(Rights::all())).unwrap();
        t.remove(a).unwrap();
        assert_eq!(t.remove(a).err(), Some(Error::InvalidHandle));
    }

    #[test]
    fn wrong_type_and_missing_rights() {
        let mut t = HandleTable::new();
        let a = t.insert(timer_handle(Rights::READ)).unwrap();
        assert_eq!(
            t.get::<Channel>(a, Rights::READ).err(),
            Some(Error::WrongObjectType)
        );
        assert!(t.get::<Timer>(a, Rights::READ).is_ok());
        assert_eq!(
            t.get::<Timer>(a, Rights::WRITE).err(),
            Some(Error::MissingRight)
        );
    }

    #[test]
    fn get_checks_id_then_type_then_rights() {
        let mut t = HandleTable::new();
        let (a, _b) = Channel::new_pair();
        let ch = t
            .insert(Handle::new(Object::Channel(a), Rights::READ))
            .unwrap();
        // Invalid ids.
        assert_eq!(
            t.get::<Channel>(HandleId(0), Rights::READ).err(),
            Some(Error::InvalidHandle)
        );
        assert_eq!(
            t.get::<Channel>(HandleId(99), Rights::READ).err(),
            Some(Error::InvalidHandle)
        );
        // Wrong type wins over missing rights.
        assert_eq!(
            t.get::<Poll>(ch, Rights::WRITE).err(),
            Some(Error::WrongObjectType)
        );
        assert_eq!(
            t.get::<Timer>(ch, Rights::empty()).err(),
            Some(Error::WrongObjectType)
        );
        // Right type, missing right.
        assert_eq!(
            t.get::<Channel>(ch, Rights::WRITE).err(),
            Some(Error::MissingRight)
        );
        assert_eq!(
            t.get::<Channel>(ch, Rights::READ | Rights::TRANSFER).err(),
            Some(Error::MissingRight)
        );
        assert!(t.get::<Channel>(ch, Rights::READ).is_ok());
        // A closed handle is invalid.
        t.remove(ch).unwrap();
        assert_eq!(
            t.get::<Channel>(ch, Rights::READ).err(),
            Some(Error::InvalidHandle)
        );
    }

    #[test]
    fn privileges_are_checked_by_kind() {
        let mut t = HandleTable::new();
        let monitor = SystemObject::new(SystemRight::Monitor);
        let m = t
            .insert(Handle::new(Object::System(monitor), Rights::empty()))
            .unwrap();
        assert!(t.privilege(m, SystemRight::Monitor).is_ok());
        assert_eq!(
            t.privilege(m, SystemRight::Shutdown).err(),
            Some(Error::MissingRight)
        );
        assert_eq!(
            t.privilege(m, SystemRight::Hypervisor).err(),
            Some(Error::MissingRight)
        );
        let timer = t.insert(timer_handle(Rights::all())).unwrap();
        assert_eq!(
            t.privilege(timer, SystemRight::Monitor).err(),
            Some(Error::WrongObjectType)
        );
        assert_eq!(
            t.privilege(HandleId(77), SystemRight::Monitor).err(),
            Some(Error::InvalidHandle)
        );
    }

    #[test]
    fn only_channels_timers_and_interrupts_are_pollable() {
        let (a, _b) = Channel::new_pair();
        assert!(Object::Channel(a).as_pollable().is_some());
        assert!(Object::Timer(Timer::new()).as_pollable().is_some());
        assert!(Object::Poll(Poll::new()).as_pollable().is_none());
        assert!(Object::System(SystemObject::new(SystemRight::Monitor))
            .as_pollable()
            .is_none());
    }

    #[test]
    fn table_has_a_limit() {
        let mut t = HandleTable::new();
        for _ in 0..HANDLE_TABLE_MAX {
            t.insert(timer_handle(Rights::all())).unwrap();
        }
        assert_eq!(
            t.insert(timer_handle(Rights::all())).err(),
            Some(Error::HandleTableFull)
        );
        assert_eq!(t.take_all().len(), HANDLE_TABLE_MAX);
        assert!(t.is_empty());
    }
}
