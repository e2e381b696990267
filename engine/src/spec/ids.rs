//! The task id → index table that validation builds once and the compiled graph keeps:
//! validation resolves every reference through it, and `Graph::compile` takes it over
//! instead of hashing a million ids a second time.
//!
//! The ids are copied back to back into one byte arena that lookups compare against: an
//! id inside the spec sits behind a 300-byte `TaskSpec` and a heap string of its own, two
//! cache misses per comparison, and both validation and every folded record look ids up.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::Spec;

/// Task ids with their declaration indices; a repeated id maps to its first declaration.
#[derive(Debug, Clone, Default)]
pub struct TaskIds {
    /// Indices hashed by id (`id_hash`). Only ever looked up, never iterated, so its order
    /// cannot reach anything folded or decided.
    pub(crate) table: HashTable<u32>,
    /// Task `t`'s id is `bytes[at[t]..at[t + 1]]`.
    pub(crate) bytes: Vec<u8>,
    pub(crate) at: Vec<u32>,
}

/// The hash of an id, for every table keyed by task id. Fx: fixed, fast, no random keys
/// (no OS randomness reaches the core).
pub fn id_hash(id: &str) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(id)
}

impl TaskIds {
    /// The table of `spec`'s ids, and each task's first declaration of its own id (itself,
    /// unless the id repeats). None when the ids do not fit u32 offsets (4 GiB of ids: no
    /// spec that could be held in memory).
    pub fn build(spec: &Spec) -> Option<(TaskIds, Vec<usize>)> {
        let n = spec.tasks.len();
        let total: usize = spec.tasks.iter().map(|t| t.id.len()).sum();
        u32::try_from(total).ok()?;
        u32::try_from(n).ok()?;
        let mut ids = TaskIds {
            table: HashTable::with_capacity(n),
            bytes: Vec::with_capacity(total),
            at: Vec::with_capacity(n + 1),
        };
        ids.at.push(0);
        let mut first = Vec::with_capacity(n);
        for (index, task) in spec.tasks.iter().enumerate() {
            let id = task.id.as_str();
            ids.bytes.extend_from_slice(id.as_bytes());
            ids.at.push(ids.bytes.len() as u32);
            let hash = id_hash(id);
            let (bytes, at) = (&ids.bytes, &ids.at);
            let entry = ids.table.entry(
                hash,
                |&j| arena_id(bytes, at, j) == id.as_bytes(),
                |&j| id_hash_bytes(arena_id(bytes, at, j)),
            );
            first.push(*entry.or_insert(index as u32).get() as usize);
        }
        Some((ids, first))
    }

    /// The first declared task with this id.
    pub fn get(&self, id: &str) -> Option<usize> {
        self.table.find(id_hash(id), |&j| self.id(j) == id.as_bytes()).map(|&j| j as usize)
    }

    /// Task `t`'s id, as bytes (a valid `str`: copied from one).
    pub(crate) fn id(&self, t: u32) -> &[u8] {
        arena_id(&self.bytes, &self.at, t)
    }
}

fn arena_id<'a>(bytes: &'a [u8], at: &[u32], t: u32) -> &'a [u8] {
    &bytes[at[t as usize] as usize..at[t as usize + 1] as usize]
}

/// `id_hash` of an id held as bytes: the arena holds only whole, valid UTF-8 ids.
fn id_hash_bytes(id: &[u8]) -> u64 {
    id_hash(std::str::from_utf8(id).expect("the arena holds whole ids"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TaskSpec;

    fn spec(ids: &[&str]) -> Spec {
        Spec {
            tasks: ids.iter().map(|id| TaskSpec { id: id.to_string(), ..TaskSpec::default() }).collect(),
            ..Spec::default()
        }
    }

    #[test]
    fn looks_ids_up_and_maps_repeats_to_the_first_declaration() {
        let (ids, first) = TaskIds::build(&spec(&["a", "bb", "a", "", "ccc"])).expect("fits");
        assert_eq!(first, [0, 1, 0, 3, 4]);
        assert_eq!(ids.get("a"), Some(0));
        assert_eq!(ids.get("bb"), Some(1));
        assert_eq!(ids.get(""), Some(3));
        assert_eq!(ids.get("ccc"), Some(4));
        assert_eq!(ids.get("b"), None);
        assert_eq!(ids.id(4), b"ccc");
    }

    #[test]
    fn many_ids_survive_the_table_growing() {
        let names: Vec<String> = (0..5000).map(|i| format!("t{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (ids, _) = TaskIds::build(&spec(&refs)).expect("fits");
        for (i, name) in names.iter().enumerate() {
            assert_eq!(ids.get(name), Some(i));
        }
        assert_eq!(ids.get("t5000"), None);
    }
}
