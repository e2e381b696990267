//! Task ids interned per side of a diff: each id is held once and named by a dense
//! index, so the facts keep one `Vec` of per-task facts instead of a map per fact, each
//! with its own copy of every id (a million-record log's facts were mostly id copies and
//! id comparisons).

use hashbrown::HashTable;
use orch_engine::spec::id_hash;

/// Ids in the order first seen, with an index by id. The table is only ever looked up,
/// never iterated: what reaches a report is ordered by declaration, seq or id.
#[derive(Debug, Clone, Default)]
pub(super) struct Ids {
    names: Vec<Box<str>>,
    table: HashTable<u32>,
}

impl Ids {
    /// The index of `id`, if it has been seen.
    pub fn find(&self, id: &str) -> Option<u32> {
        self.table.find(id_hash(id), |&i| *self.names[i as usize] == *id).copied()
    }

    /// The index of `id`, given the next one if it is new.
    pub fn intern(&mut self, id: &str) -> u32 {
        let names = &self.names;
        let entry = self.table.entry(id_hash(id), |&i| *names[i as usize] == *id, |&i| id_hash(&names[i as usize]));
        match entry {
            hashbrown::hash_table::Entry::Occupied(e) => *e.get(),
            hashbrown::hash_table::Entry::Vacant(e) => {
                // A u32 holds the index: a log has fewer than 2^32 records, and an id
                // comes from a record or a spec entry.
                let i = u32::try_from(self.names.len()).expect("fewer than 2^32 task ids");
                e.insert(i);
                self.names.push(id.into());
                i
            }
        }
    }

    pub fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_each_id_once_in_first_seen_order() {
        let mut ids = Ids::default();
        let names: Vec<String> = (0..5000).map(|i| format!("t{}", i % 4000)).collect();
        let got: Vec<u32> = names.iter().map(|n| ids.intern(n)).collect();
        assert_eq!(ids.names.len(), 4000);
        for (n, &i) in names.iter().zip(&got) {
            assert_eq!(ids.name(i), n);
            assert_eq!(ids.find(n), Some(i));
        }
        assert_eq!(got[4000], got[0]);
        assert_eq!(ids.find("t4000"), None);
        assert_eq!(ids.intern(""), 4000);
        assert_eq!(ids.find(""), Some(4000));
    }
}
