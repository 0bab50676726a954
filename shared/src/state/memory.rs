//! In-memory backend: for unit tests of code that uses a [`StateStore`].

use super::{StateError, StateStore, Stored, Version};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

/// Documents in a map; versions are a per-store counter, so every write gets a new one.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<(u64, HashMap<String, Stored>)>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn load(&self, key: &str) -> Result<Option<Stored>, StateError> {
        Ok(self.inner.lock().expect("not poisoned").1.get(key).cloned())
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&Version>,
        bytes: Vec<u8>,
    ) -> Result<Version, StateError> {
        let mut guard = self.inner.lock().expect("not poisoned");
        let (counter, docs) = &mut *guard;
        let current = docs.get(key).map(|s| &s.version);
        if current != expected {
            return Err(StateError::Conflict {
                key: key.to_string(),
            });
        }
        *counter += 1;
        let version = Version(counter.to_string());
        docs.insert(
            key.to_string(),
            Stored {
                bytes,
                version: version.clone(),
            },
        );
        Ok(version)
    }

    fn describe(&self) -> String {
        "memory (mutex compare-and-swap)".into()
    }
}
