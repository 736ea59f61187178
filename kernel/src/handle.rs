//! Per-process handle tables: handle numbers to (object, rights).

use alloc::sync::Arc;
use alloc::vec::Vec;

use starina::abi::Error;
use starina::abi::HandleId;
use starina::abi::Rights;
use starina::abi::HANDLE_TABLE_MAX;

use crate::object::channel::Channel;
use crate::object::poll::Poll;
use crate::object::system::SystemObject;
use crate::object::timer::Timer;

/// A reference to a kernel object, of one of the types a handle can name.
#[derive(Clone)]
pub enum Object {
    Channel(Arc<Channel>),
    Poll(Arc<Poll>),
    Timer(Arc<Timer>),
    System(Arc<SystemObject>),
    #[cfg(not(test))]
    Device(Arc<crate::object::device::DeviceObject>),
    #[cfg(not(test))]
    Interrupt(Arc<crate::object::interrupt::Interrupt>),
    #[cfg(not(test))]
    GuestRam(Arc<crate::object::vm::GuestRam>),
    #[cfg(not(test))]
    Vcpu(Arc<crate::object::vm::Vcpu>),
}

impl Object {
    pub fn type_name(&self) -> &'static str {
        match self {
            Object::Channel(_) => "channel",
            Object::Poll(_) => "poll",
            Object::Timer(_) => "timer",
            Object::System(_) => "system",
            #[cfg(not(test))]
            Object::Device(_) => "device",
            #[cfg(not(test))]
            Object::Interrupt(_) => "interrupt",
            #[cfg(not(test))]
            Object::GuestRam(_) => "guest RAM",
            #[cfg(not(test))]
            Object::Vcpu(_) => "vCPU",
        }
    }
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

    pub fn get(&self, id: HandleId) -> Result<&Handle, Error> {
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
        core::mem::take(&mut self.slots).into_iter().flatten().collect()
    }

    /// Every handle in the table.
    pub fn iter(&self) -> impl Iterator<Item = &Handle> {
        self.slots.iter().flatten()
    }

    pub fn channel(&self, id: HandleId, rights: Rights) -> Result<&Arc<Channel>, Error> {
        let h = self.get(id)?;
        match &h.object {
            Object::Channel(ch) => {
                h.require(rights)?;
                Ok(ch)
            }
            _ => Err(Error::WrongObjectType),
        }
    }

    pub fn poll(&self, id: HandleId, rights: Rights) -> Result<&Arc<Poll>, Error> {
        let h = self.get(id)?;
        match &h.object {
            Object::Poll(p) => {
                h.require(rights)?;
                Ok(p)
            }
            _ => Err(Error::WrongObjectType),
        }
    }

    pub fn timer(&self, id: HandleId, rights: Rights) -> Result<&Arc<Timer>, Error> {
        let h = self.get(id)?;
        match &h.object {
            Object::Timer(t) => {
                h.require(rights)?;
                Ok(t)
            }
            _ => Err(Error::WrongObjectType),
        }
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
        assert_eq!(t.get(HandleId(0)).err(), Some(Error::InvalidHandle));
        assert_eq!(t.get(HandleId(7)).err(), Some(Error::InvalidHandle));
        assert_eq!(t.remove(HandleId(u32::MAX)).err(), Some(Error::InvalidHandle));
        let a = t.insert(timer_handle(Rights::all())).unwrap();
        t.remove(a).unwrap();
        assert_eq!(t.remove(a).err(), Some(Error::InvalidHandle));
    }

    #[test]
    fn wrong_type_and_missing_rights() {
        let mut t = HandleTable::new();
        let a = t.insert(timer_handle(Rights::READ)).unwrap();
        assert_eq!(t.channel(a, Rights::READ).err(), Some(Error::WrongObjectType));
        assert!(t.timer(a, Rights::READ).is_ok());
        assert_eq!(t.timer(a, Rights::WRITE).err(), Some(Error::MissingRight));
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
