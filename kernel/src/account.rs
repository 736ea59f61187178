//! Memory budgets: what each component may hold, and what it holds.
//!
//! Every component has an account (its spec's `memory_limit_mib`); the
//! kernel itself has account 0, without a limit. An account is charged for
//! the component's heap blocks (the heap keeps each account's blocks on
//! pages of their own, so a block freed by anyone goes back to the account
//! that allocated it) and for what the kernel holds on its behalf: thread
//! stacks, guest RAM, DMA buffers ([`Charge`]), and kernel objects and
//! queued messages allocated during its system calls.
//!
//! Two ways to be over budget, never a kernel panic:
//! - the component's own allocation fails (the heap returns null; the
//!   resulting panic ends that component alone);
//! - a system call that would allocate returns `OverBudget`
//!   ([`check`] at its start, [`Charge::try_new`] for large objects).
//!
//! Allocations the kernel makes inside a system call are charged but not
//! refused (they are small and bounded per call): the kernel never meets
//! an allocation failure in the middle of its own work for a budget.
//!
//! Without unwinding, a component that dies leaves its stack frames'
//! heap objects behind. They stay charged to its account, so a restart
//! starts a new *instance* that is measured from what the last one left
//! ([`start_instance`]): leaks cost memory, never the next instance's
//! budget.

use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use starina::abi::Error;

/// Accounts: the kernel's, and one per component of the wiring (a wiring
/// with more components shares the last one among the rest).
pub const MAX_ACCOUNTS: usize = 128;
/// The kernel's own account: no limit.
pub const KERNEL: u8 = 0;

/// The part of a budget (one in this many) that system calls leave to the
/// component's own allocations.
pub const OWN_SHARE: usize = 8;

pub struct Account {
    /// Bytes the current instance may hold; `usize::MAX` for no limit.
    limit: AtomicUsize,
    /// Bytes held that the current instance did not allocate (what earlier
    /// instances left when it started).
    base: AtomicUsize,
    /// Bytes held now.
    in_use: AtomicUsize,
}

impl Account {
    const fn new() -> Account {
        Account {
            limit: AtomicUsize::new(usize::MAX),
            base: AtomicUsize::new(0),
            in_use: AtomicUsize::new(0),
        }
    }

    /// Bytes the current instance holds.
    fn instance_use(&self) -> usize {
        self.in_use
            .load(Ordering::Relaxed)
            .saturating_sub(self.base.load(Ordering::Relaxed))
    }

    /// Whether `bytes` more stay within the limit.
    pub fn fits(&self, bytes: usize) -> bool {
        self.instance_use().saturating_add(bytes) <= self.limit.load(Ordering::Relaxed)
    }

    pub fn charge(&self, bytes: usize) {
        self.in_use.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives back what a `charge` of the same account took (the heap's
    /// page owners and [`Charge`] pair them exactly).
    pub fn uncharge(&self, bytes: usize) {
        self.in_use.fetch_sub(bytes, Ordering::Relaxed);
    }
}

static ACCOUNTS: [Account; MAX_ACCOUNTS] = [const { Account::new() }; MAX_ACCOUNTS];

pub fn get(account: u8) -> &'static Account {
    &ACCOUNTS[account as usize % MAX_ACCOUNTS]
}

/// The account of component `index` in the wiring.
pub fn for_component(index: usize) -> u8 {
    (index + 1).min(MAX_ACCOUNTS - 1) as u8
}

/// A new instance of the component behind `account` starts, with a limit
/// of `limit_bytes`: what earlier instances left behind is not counted
/// against it.
pub fn start_instance(account: u8, limit_bytes: usize) {
    let a = get(account);
    a.base
        .store(a.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
    a.limit.store(limit_bytes, Ordering::Relaxed);
}

/// What the account's current instance holds, and its limit, in bytes.
pub fn usage(account: u8) -> (usize, usize) {
    let a = get(account);
    (a.instance_use(), a.limit.load(Ordering::Relaxed))
}

/// `OverBudget` if the account has used its limit but the last
/// [`OWN_SHARE`]: for the start of a system call that allocates. That last
/// part stays for the component's own allocations, so a component whose
/// budget fills with kernel objects (messages queued for a peer that does
/// not read) sees `OverBudget` from its calls, and can shed load, before
/// its own allocations fail.
pub fn check(account: u8) -> Result<(), Error> {
    let a = get(account);
    let limit = a.limit.load(Ordering::Relaxed);
    if a.instance_use() < limit - limit / OWN_SHARE {
        Ok(())
    } else {
        Err(Error::OverBudget)
    }
}

/// Bytes charged to an account for a large kernel object (a thread stack,
/// guest RAM, a DMA buffer), given back when the object goes.
pub struct Charge {
    account: u8,
    bytes: usize,
}

impl Charge {
    /// Charges `bytes`, or `OverBudget` if they do not fit.
    pub fn try_new(account: u8, bytes: usize) -> Result<Charge, Error> {
        let a = get(account);
        if !a.fits(bytes) {
            return Err(Error::OverBudget);
        }
        a.charge(bytes);
        Ok(Charge { account, bytes })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        get(self.account).uncharge(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test uses accounts of its own: the table is global.

    #[test]
    fn a_charge_past_the_limit_is_over_budget_and_frees_on_drop() {
        start_instance(100, 1000);
        let a = Charge::try_new(100, 600).unwrap();
        assert!(matches!(Charge::try_new(100, 500), Err(Error::OverBudget)));
        assert_eq!(get(100).instance_use(), 600);
        drop(a);
        assert_eq!(get(100).instance_use(), 0);
        assert!(Charge::try_new(100, 1000).is_ok());
    }

    #[test]
    fn calls_are_refused_before_the_components_own_share() {
        start_instance(101, 800);
        assert_eq!(check(101), Ok(()));
        get(101).charge(699);
        assert_eq!(check(101), Ok(()));
        get(101).charge(1);
        // 700 of 800: the last eighth is the component's own.
        assert_eq!(check(101), Err(Error::OverBudget));
        assert!(get(101).fits(100));
        assert!(!get(101).fits(101));
        get(101).uncharge(1);
        assert_eq!(check(101), Ok(()));
    }

    #[test]
    fn a_new_instance_is_not_charged_for_what_the_last_one_left() {
        start_instance(102, 100);
        get(102).charge(90); // leaked by an instance that died
        start_instance(102, 100);
        assert_eq!(get(102).instance_use(), 0);
        assert!(get(102).fits(100));
        assert!(!get(102).fits(101));
        // The leak freed later gives room, never a negative count.
        get(102).charge(5);
        get(102).uncharge(90);
        assert_eq!(get(102).instance_use(), 0);
    }

    #[test]
    fn the_kernel_account_has_no_limit() {
        assert!(get(KERNEL).fits(usize::MAX / 2));
        assert_eq!(check(KERNEL), Ok(()));
    }

    #[test]
    fn accounts_past_the_table_share_the_last() {
        assert_eq!(for_component(0), 1);
        assert_eq!(for_component(500), (MAX_ACCOUNTS - 1) as u8);
    }
}
