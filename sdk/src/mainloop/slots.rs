//! The loop's objects, indexed by handle number. Handle numbers are small
//! and dense (a process holds at most `HANDLE_TABLE_MAX`), so a vector
//! finds an object in one step on every event, where a map would search.

use alloc::vec::Vec;

use super::cx::Slot;
use crate::abi::HandleId;

pub(super) struct Slots<S> {
    by_id: Vec<Option<Slot<S>>>,
    len: usize,
}

impl<S> Slots<S> {
    pub(super) const fn new() -> Slots<S> {
        Slots {
            by_id: Vec::new(),
            len: 0,
        }
    }

    /// Puts `slot` at `id`, returning what was there (nothing, for a handle
    /// the kernel just gave out).
    pub(super) fn insert(&mut self, id: HandleId, slot: Slot<S>) -> Option<Slot<S>> {
        let index = id.0 as usize;
        if index >= self.by_id.len() {
            self.by_id.resize_with(index + 1, || None);
        }
        let old = self.by_id[index].replace(slot);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub(super) fn remove(&mut self, id: HandleId) -> Option<Slot<S>> {
        let slot = self.by_id.get_mut(id.0 as usize)?.take()?;
        self.len -= 1;
        Some(slot)
    }

    #[inline]
    pub(super) fn get(&self, id: HandleId) -> Option<&Slot<S>> {
        self.by_id.get(id.0 as usize)?.as_ref()
    }

    #[inline]
    pub(super) fn get_mut(&mut self, id: HandleId) -> Option<&mut Slot<S>> {
        self.by_id.get_mut(id.0 as usize)?.as_mut()
    }

    /// Every object's id, ascending.
    pub(super) fn ids(&self) -> impl Iterator<Item = HandleId> + '_ {
        self.by_id
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.is_some())
            .map(|(i, _)| HandleId(i as u32))
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (HandleId, &mut Slot<S>)> {
        self.by_id
            .iter_mut()
            .enumerate()
            .filter_map(|(i, slot)| slot.as_mut().map(|s| (HandleId(i as u32), s)))
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}
