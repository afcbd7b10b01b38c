//! One policy for poisoned locks. A poisoned mutex only says that a thread panicked while
//! holding it; every critical section in this crate is a short update that leaves its
//! data consistent, so the data is used as it is rather than dropped or turned into an
//! error at each caller.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
