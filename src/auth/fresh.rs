//! A small map whose entries are trusted for a while, with a bound on their number.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

pub struct Fresh<K, V> {
    entries: HashMap<K, (V, Instant)>,
    trust_for: Duration,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> Fresh<K, V> {
    pub fn new(trust_for: Duration, capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            trust_for,
            capacity,
        }
    }

    /// The value, while it is still trusted.
    pub fn get(&self, key: &K) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(_, learnt)| learnt.elapsed() < self.trust_for)
            .map(|(value, _)| value.clone())
    }

    /// Remembers a value; when full, forgets what is no longer trusted, and everything
    /// if that is not enough.
    pub fn insert(&mut self, key: K, value: V) {
        if self.entries.len() >= self.capacity {
            let trust_for = self.trust_for;
            self.entries
                .retain(|_, (_, learnt)| learnt.elapsed() < trust_for);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (value, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_map_never_passes_its_capacity() {
        let mut fresh = Fresh::new(Duration::from_secs(60), 2);
        fresh.insert(1, "a");
        fresh.insert(2, "b");
        assert_eq!(fresh.get(&1), Some("a"));
        fresh.insert(3, "c");
        assert!(fresh.entries.len() <= 2);
        assert_eq!(fresh.get(&3), Some("c"));

        let mut stale = Fresh::new(Duration::ZERO, 10);
        stale.insert(1, "a");
        assert_eq!(stale.get(&1), None);
    }
}
