//! Lists that most containers hold an equal copy of: the resolved capability set (Docker's
//! default 14 for nearly every container), the cgroup device rules (the 11 default rules), the
//! image's layers (every container of an image has the same) and the command (containers of one
//! application, or started alike, run the same). The agent keeps every container's
//! record in memory, so as separate `Vec`s these were a few dozen small allocations, about 1.6 KB
//! per container on musl, the same bytes 200 times. An equal list is now one shared allocation.
//! On disk and on the wire it is still a plain sequence: records written before this read back
//! unchanged.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// An item type with a pool of its own: the lists made last, newest last, that new ones are
/// matched against. Bounded, and held strongly (a few hundred bytes each): when it is full the
/// oldest is let go (its holders keep it), so a list that keeps being made stays in.
pub trait Pooled: PartialEq + Sized + 'static {
    fn pool() -> &'static Mutex<Vec<Arc<[Self]>>>;
}

impl Pooled for String {
    fn pool() -> &'static Mutex<Vec<Arc<[String]>>> {
        static POOL: Mutex<Vec<Arc<[String]>>> = Mutex::new(Vec::new());
        &POOL
    }
}

impl Pooled for Digest {
    fn pool() -> &'static Mutex<Vec<Arc<[Digest]>>> {
        static POOL: Mutex<Vec<Arc<[Digest]>>> = Mutex::new(Vec::new());
        &POOL
    }
}

const POOL_MAX: usize = 16;

/// An immutable list; equal lists made while another is alive share its allocation.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedList<T: Pooled = String>(Arc<[T]>);

impl<T: Pooled> SharedList<T> {
    pub fn new(items: Vec<T>) -> SharedList<T> {
        if items.is_empty() {
            return SharedList::default();
        }
        // A poisoned lock only means another thread panicked while matching: the pool is
        // still a valid list.
        let mut pool = T::pool().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = pool.iter().find(|a| ***a == *items) {
            return SharedList(found.clone());
        }
        let list: Arc<[T]> = items.into();
        if pool.len() == POOL_MAX {
            pool.remove(0);
        }
        pool.push(list.clone());
        SharedList(list)
    }

    /// A list of its own, not matched against the pool nor kept there: for one-off lists (an
    /// `exec`'s command) that would only push out the lists containers share.
    pub fn own(items: Vec<T>) -> SharedList<T> {
        SharedList(items.into())
    }
}

impl<T: Pooled> Default for SharedList<T> {
    fn default() -> SharedList<T> {
        SharedList(Arc::from(Vec::new()))
    }
}

impl<T: Pooled> From<Vec<T>> for SharedList<T> {
    fn from(items: Vec<T>) -> SharedList<T> {
        SharedList::new(items)
    }
}

impl<T: Pooled> Deref for SharedList<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<'a, T: Pooled> IntoIterator for &'a SharedList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: Pooled + fmt::Debug> fmt::Debug for SharedList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl<T: Pooled + Serialize> Serialize for SharedList<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de, T: Pooled + Deserialize<'de>> Deserialize<'de> for SharedList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SharedList<T>, D::Error> {
        Vec::<T>::deserialize(d).map(SharedList::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn equal_lists_share_one_allocation() {
        let a = SharedList::new(list(&["CAP_CHOWN", "shared-test-1"]));
        let b = SharedList::new(list(&["CAP_CHOWN", "shared-test-1"]));
        assert!(Arc::ptr_eq(&a.0, &b.0));
        let c = SharedList::new(list(&["CAP_CHOWN", "shared-test-2"]));
        assert!(!Arc::ptr_eq(&a.0, &c.0));
        assert_eq!(&c[..], &list(&["CAP_CHOWN", "shared-test-2"])[..]);
    }

    #[test]
    fn encodes_exactly_as_a_vec_of_strings() {
        let v = list(&["c 1:3 rwm", "a *:* rwm", "shared-test-3"]);
        let as_vec = postcard::to_allocvec(&v).unwrap();
        let shared = SharedList::new(v.clone());
        assert_eq!(postcard::to_allocvec(&shared).unwrap(), as_vec);
        let back: SharedList = postcard::from_bytes(&as_vec).unwrap();
        assert_eq!(&back[..], &v[..]);
        assert!(Arc::ptr_eq(&back.0, &shared.0), "a record read back shares the live copy");
        let empty: SharedList = postcard::from_bytes(&postcard::to_allocvec(&Vec::<String>::new()).unwrap()).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn the_pool_stays_bounded() {
        let lists: Vec<SharedList> = (0..3 * POOL_MAX).map(|i| SharedList::new(vec![format!("shared-test-bound-{i}")])).collect();
        assert!(String::pool().lock().unwrap().len() <= POOL_MAX);
        // Lists beyond the pool still hold their own items.
        assert_eq!(lists[3 * POOL_MAX - 1][0], format!("shared-test-bound-{}", 3 * POOL_MAX - 1));
    }
}
