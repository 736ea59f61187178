//! The handles one fuzzing thread knows of, and the numbers it tries.
//!
//! Numbers come from five places: handles it owns (of any type, so calls
//! also get the wrong type), handles it closed or moved a moment ago (the
//! kernel may have reused the number, perhaps for another thread's
//! object), the component's own `Env` handles, small numbers nobody
//! tracks, and numbers that cannot be valid (0, past the table, huge).

use alloc::vec::Vec;

use starina::abi::HANDLE_TABLE_MAX;
use starina::HandleId;

use crate::rng::Rng;

/// What a handle names, as far as this thread knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Poll,
    Timer,
    GuestRam,
    Vcpu,
    Interrupt,
    Dma,
    /// Received in a message or duplicated from an unknown number.
    Unknown,
}

pub struct Pool {
    live: Vec<(HandleId, Kind)>,
    /// Recently closed or moved numbers, oldest overwritten first.
    gone: [HandleId; 8],
    gone_next: usize,
    /// The `Env`'s handles: passed as arguments, never closed or moved.
    protected: Vec<HandleId>,
    /// How many handles this thread keeps before it closes some.
    pub limit: usize,
}

impl Pool {
    pub fn new(protected: Vec<HandleId>, limit: usize) -> Pool {
        Pool {
            live: Vec::new(),
            gone: [HandleId(0); 8],
            gone_next: 0,
            protected,
            limit,
        }
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn add(&mut self, id: HandleId, kind: Kind) {
        if self.protected.contains(&id) {
            // A number reused after the kernel handed it out again cannot
            // be an Env handle: those are never closed. Defensive only.
            return;
        }
        self.live.retain(|&(h, _)| h != id);
        self.live.push((id, kind));
    }

    /// Forgets `id` (closed, freed or moved away).
    pub fn remove(&mut self, id: HandleId) {
        let before = self.live.len();
        self.live.retain(|&(h, _)| h != id);
        if self.live.len() != before {
            self.gone[self.gone_next] = id;
            self.gone_next = (self.gone_next + 1) % self.gone.len();
        }
    }

    /// How many live handles of `kind` it has.
    pub fn count(&self, kind: Kind) -> usize {
        self.live.iter().filter(|&&(_, k)| k == kind).count()
    }

    pub fn kind_of(&self, id: HandleId) -> Option<Kind> {
        self.live.iter().find(|&&(h, _)| h == id).map(|&(_, k)| k)
    }

    pub fn is_protected(&self, id: HandleId) -> bool {
        self.protected.contains(&id)
    }

    /// A live handle of `kind`, if it has one.
    pub fn of_kind(&self, rng: &mut Rng, kind: Kind) -> Option<HandleId> {
        let n = self.live.iter().filter(|&&(_, k)| k == kind).count();
        if n == 0 {
            return None;
        }
        let i = rng.below(n as u64) as usize;
        self.live
            .iter()
            .filter(|&&(_, k)| k == kind)
            .nth(i)
            .map(|&(h, _)| h)
    }

    /// A live handle of any kind.
    pub fn any_live(&self, rng: &mut Rng) -> Option<(HandleId, Kind)> {
        (!self.live.is_empty()).then(|| self.live[rng.below(self.live.len() as u64) as usize])
    }

    /// A number that is not valid in any table.
    pub fn invalid(rng: &mut Rng) -> HandleId {
        let max = HANDLE_TABLE_MAX as u32;
        let far = max + 2 + rng.below(1 << 20) as u32;
        HandleId(rng.pick(&[0, max + 1, far, u32::MAX]))
    }

    /// Any number, from all five places; mostly of `kind` when given.
    pub fn any(&self, rng: &mut Rng, kind: Option<Kind>) -> HandleId {
        if let Some(k) = kind {
            if rng.below(4) != 0 {
                if let Some(h) = self.of_kind(rng, k) {
                    return h;
                }
            }
        }
        match rng.below(10) {
            0..=4 => self.any_live(rng).map_or(HandleId(1), |(h, _)| h),
            5 | 6 => self.gone[rng.below(self.gone.len() as u64) as usize],
            7 => rng.pick(&self.protected),
            8 => HandleId(1 + rng.below(64) as u32),
            _ => Self::invalid(rng),
        }
    }

    /// A number for a call that closes or moves the handle: never an Env
    /// handle. `own_only`: only its own live handles or invalid numbers, so
    /// it cannot take another thread's object away mid-wait.
    pub fn victim(&self, rng: &mut Rng, kind: Option<Kind>, own_only: bool) -> HandleId {
        let id = if own_only {
            match kind.and_then(|k| self.of_kind(rng, k)) {
                Some(h) if rng.below(4) != 0 => h,
                _ if rng.below(5) != 0 => self.any_live(rng).map_or(HandleId(0), |(h, _)| h),
                _ => Self::invalid(rng),
            }
        } else {
            self.any(rng, kind)
        };
        if self.is_protected(id) {
            Self::invalid(rng)
        } else {
            id
        }
    }

    /// Takes every live handle out (for closing them).
    pub fn drain(&mut self) -> Vec<(HandleId, Kind)> {
        core::mem::take(&mut self.live)
    }
}
