//! Locks that survive a panicking holder. Every mutex in the daemon guards
//! plain counters, slots or caches that stay consistent between statements, so
//! a thread that panicked while holding one leaves nothing half-done: the next
//! holder takes the data as it is rather than taking the whole daemon down.

use std::sync::{Mutex, MutexGuard};

/// [`Mutex::lock`] that takes over a poisoned lock instead of failing.
pub trait LockUnpoisoned<T: ?Sized> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockUnpoisoned<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_whose_holder_panicked_is_taken_over() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock_unpoisoned();
            panic!("holder dies");
        })
        .join();
        assert!(m.is_poisoned());
        *m.lock_unpoisoned() += 1;
        assert_eq!(*m.lock_unpoisoned(), 2);
    }
}
