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
    /// Task `t`'s id is `text[at[t]..at[t + 1]]`.
    pub(crate) text: String,
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
            text: String::with_capacity(total),
            at: Vec::with_capacity(n + 1),
        };
        ids.at.push(0);
        let mut first = Vec::with_capacity(n);
        for (index, task) in spec.tasks.iter().enumerate() {
            first.push(ids.insert(&task.id, index as u32) as usize);
        }
        Some((ids, first))
    }

    /// The table of ids already laid out back to back (`text`, with task `t`'s ending at
    /// `ends[t]`), as a compiled graph's image carries them. Every end must be in order
    /// and on a character boundary, and no id may repeat.
    pub fn from_arena(text: String, ends: &[u32]) -> Result<TaskIds, String> {
        let mut at = Vec::with_capacity(ends.len() + 1);
        at.push(0);
        let mut ids = TaskIds { table: HashTable::with_capacity(ends.len()), text, at };
        let mut start = 0;
        for (t, &end) in ends.iter().enumerate() {
            if end < start || !ids.text.is_char_boundary(end as usize) {
                return Err(format!("task {t}'s id ends at byte {end}, not after {start} on a character boundary"));
            }
            ids.at.push(end);
            let id = &ids.text[start as usize..end as usize];
            let hash = id_hash(id);
            let (text, at) = (&ids.text, &ids.at);
            if ids.table.find(hash, |&j| arena_id(text, at, j) == id).is_some() {
                return Err(format!("task {t}'s id {id:?} repeats"));
            }
            ids.table.insert_unique(hash, t as u32, |&j| id_hash(arena_id(text, at, j)));
            start = end;
        }
        if start as usize != ids.text.len() {
            return Err(format!("{} bytes of ids belong to no task", ids.text.len() - start as usize));
        }
        Ok(ids)
    }

    /// Appends `id` as task `index` (the next one), unless it is there already; returns
    /// the index the id maps to.
    pub(crate) fn insert(&mut self, id: &str, index: u32) -> u32 {
        self.text.push_str(id);
        self.at.push(self.text.len() as u32);
        let hash = id_hash(id);
        let (text, at) = (&self.text, &self.at);
        *self
            .table
            .entry(hash, |&j| arena_id(text, at, j) == id, |&j| id_hash(arena_id(text, at, j)))
            .or_insert(index)
            .get()
    }

    /// The first declared task with this id.
    pub fn get(&self, id: &str) -> Option<usize> {
        self.table.find(id_hash(id), |&j| self.id(j) == id).map(|&j| j as usize)
    }

    /// Task `t`'s id.
    pub(crate) fn id(&self, t: u32) -> &str {
        arena_id(&self.text, &self.at, t)
    }
}

fn arena_id<'a>(text: &'a str, at: &[u32], t: u32) -> &'a str {
    &text[at[t as usize] as usize..at[t as usize + 1] as usize]
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
        assert_eq!(ids.id(4), "ccc");
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
