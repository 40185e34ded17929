//! A bounded least-recently-used map keyed by text ([`TextLru`]), used twice: as each
//! connection's statement cache (SQL text → prepared statement, `live.rs`) and as each
//! adapter's shape cache (shape key → planned statement, `shapes.rs`).
//!
//! Prepared statements live on one server connection, so a statement cache belongs to the
//! client it was prepared on. It is keyed by the exact SQL text (two adapters with different
//! schemas on one client produce different texts), bounded, and evicts the least recently
//! used entry. Migrations clear it; a statement the server rejects as stale (SQLSTATE 0A000,
//! …) is evicted and prepared again.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use tokio_postgres::Statement;

/// How many statements one connection keeps prepared by default.
pub(crate) const DEFAULT_CAPACITY: usize = 512;

/// A bounded, least-recently-used map from a text (SQL, or a shape key) to `V` (a prepared
/// statement by default).
#[derive(Debug)]
pub(crate) struct TextLru<V = Statement> {
    capacity: usize,
    inner: Mutex<Entries<V>>,
}

#[derive(Debug)]
struct Entries<V> {
    clock: u64,
    map: HashMap<String, (V, u64), BuildHasherDefault<TextHasher>>,
}

/// The hasher of the cache's keys: SQL texts (a join's is over a kilobyte) and shape keys,
/// hashed on every call. The standard SipHash costs about two instructions per byte; this one
/// (the multiply-rotate hash rustc uses, FxHash) takes eight bytes per step. It gives no
/// protection against keys chosen to collide, which these never are: they are built from the
/// adapter's schema and the shape of a call (its field names and operators, never a value).
#[derive(Debug, Default, Clone, Copy)]
struct TextHasher(u64);

impl TextHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for TextHasher {
    fn write(&mut self, bytes: &[u8]) {
        // The length first: the last word is padded with zeros.
        self.write_usize(bytes.len());
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl<V: Clone> TextLru<V> {
    /// An empty cache that keeps at most `capacity` statements (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Entries {
                clock: 0,
                map: HashMap::default(),
            }),
        }
    }

    /// The prepared statement for `sql`, if cached; marks it as recently used.
    pub(crate) fn get(&self, sql: &str) -> Option<V> {
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        entries.map.get_mut(sql).map(|(statement, used)| {
            *used = now;
            statement.clone()
        })
    }

    /// Stores a freshly prepared statement, evicting the least recently used one when full.
    pub(crate) fn insert(&self, sql: &str, statement: V) {
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        if !entries.map.contains_key(sql) && entries.map.len() >= self.capacity {
            let oldest = entries
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                entries.map.remove(&oldest);
            }
        }
        entries.map.insert(sql.to_owned(), (statement, now));
    }

    /// Forgets the statement for `sql` (the server closes it once no call holds it).
    pub(crate) fn remove(&self, sql: &str) {
        self.lock().map.remove(sql);
    }

    /// Forgets every entry, e.g. after a migration changed tables.
    pub(crate) fn clear(&self) {
        self.lock().map.clear();
    }

    /// How many statements are cached.
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<V>> {
        // A panic while holding this lock cannot leave the map inconsistent (every mutation is
        // a single map call), so a poisoned lock is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_is_evicted() {
        let cache = TextLru::<u32>::new(3);
        cache.insert("a", 1);
        cache.insert("b", 2);
        cache.insert("c", 3);
        // `a` is used again: `b` is now the least recently used.
        assert_eq!(cache.get("a"), Some(1));
        cache.insert("d", 4);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("b"), None, "the least recently used entry goes");
        assert_eq!(cache.get("a"), Some(1), "the recently used entry stays");
        assert_eq!(cache.get("c"), Some(3));
        assert_eq!(cache.get("d"), Some(4), "the newest entry stays");
        // Re-inserting a present key evicts nothing.
        cache.insert("d", 5);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("d"), Some(5));
    }

    #[test]
    fn texts_differing_anywhere_hash_differently() {
        let hash = |text: &str| {
            let mut hasher = TextHasher::default();
            std::hash::Hash::hash(text, &mut hasher);
            hasher.finish()
        };
        let long = "SELECT \"id\" FROM \"users\" WHERE \"email\" = $1 LIMIT 1";
        let mut other = long.to_owned();
        other.replace_range(long.len() - 1.., "2");
        assert_ne!(hash(long), hash(&other), "last byte");
        assert_ne!(hash("abcdefgh"), hash("abcdefgh\0"), "trailing NUL");
        assert_ne!(hash(""), hash("\0"));
        let cache = TextLru::<u32>::new(4);
        cache.insert(long, 1);
        cache.insert(&other, 2);
        assert_eq!(cache.get(long), Some(1));
        assert_eq!(cache.get(&other), Some(2));
    }

    #[test]
    fn removal_and_clearing_forget_entries() {
        let cache = TextLru::<u32>::new(0);
        cache.insert("a", 1);
        assert_eq!(cache.len(), 1, "capacity is at least one");
        cache.insert("b", 2);
        assert_eq!(cache.get("a"), None);
        cache.remove("b");
        assert_eq!(cache.len(), 0);
        cache.insert("c", 3);
        cache.clear();
        assert_eq!(cache.get("c"), None);
    }
}
