//! Checking a graph image before anything is built on it: an image comes from a log, and
//! a damaged or hand-made log must be refused with a reason, never panic or loop in the
//! fold. Every check is one pass over the image (bounds, orders, one pass for each kind of
//! loop; the waves' owners in an ordered map), so loading stays a fraction of what
//! compiling the spec costs.

use std::collections::BTreeMap;

use super::build::{dependents_of, node, DeclaredWave, Parts};
use super::image::{numbers, unpack, GraphImage, NONE};
use super::TaskIdx;
use crate::spec::{RunConfig, TaskIds};

impl GraphImage {
    /// The parts to build its graph from, and the run settings; or what is wrong with it.
    pub(crate) fn parts(&self) -> Result<(Parts, RunConfig), String> {
        let run: RunConfig = serde_json::from_str(&self.run).map_err(|e| format!("run settings: {e}"))?;
        let ends = numbers(&self.id_ends, "id")?;
        let n = ends.len();
        let ids = TaskIds::from_arena(self.ids.clone(), &ends)?;
        let column = |bytes: &[u8], what: &str| -> Result<Vec<u32>, String> {
            let v = numbers(bytes, what)?;
            match v.len() == n {
                true => Ok(v),
                false => Err(format!("the {what} column has {} entries for {n} tasks", v.len())),
            }
        };
        let in_range = |t: u32, what: &str| match (t as usize) < n {
            true => Ok(t),
            false => Err(format!("{what} names task {t} of {n}")),
        };

        let parents = column(&self.parents, "parent")?;
        let mut parent = Vec::with_capacity(n);
        for (t, &p) in parents.iter().enumerate() {
            parent.push(match p {
                NONE => None,
                p if p as usize == t => return Err(format!("task {t} is its own parent")),
                p => Some(in_range(p, "a parent")?),
            });
        }
        no_parent_loop(&parent)?;

        let dep_ends = column(&self.dep_ends, "after")?;
        let deps = numbers(&self.deps, "after targets")?;
        let mut deps_at = Vec::with_capacity(n + 1);
        deps_at.push(0u32);
        // Whether every task comes after all it runs after (as specs are usually written):
        // then `after` cannot loop, and the search for a loop is skipped.
        let mut declared_after = true;
        for (t, &end) in dep_ends.iter().enumerate() {
            let start = *deps_at.last().unwrap_or(&0);
            let row = deps
                .get(start as usize..end as usize)
                .ok_or_else(|| format!("task {t}'s after row is out of order"))?;
            for (k, &d) in row.iter().enumerate() {
                in_range(d, "an after")?;
                if d as usize == t || (k > 0 && row[k - 1] >= d) {
                    return Err(format!("task {t}'s after row is not sorted, unique and free of itself"));
                }
                declared_after &= (d as usize) < t;
            }
            deps_at.push(end);
        }
        if *deps_at.last().unwrap_or(&0) as usize != deps.len() {
            return Err("after targets belong to no task".into());
        }
        if !declared_after {
            no_after_loop(n, &deps_at, &deps)?;
        }

        if self.facts.len() != 2 * n {
            return Err(format!("the facts column is {} bytes for {n} tasks", self.facts.len()));
        }
        let nodes = self
            .facts
            .chunks_exact(2)
            .enumerate()
            .map(|(t, f)| {
                unpack([f[0], f[1]]).map(node).ok_or_else(|| format!("task {t}'s facts are not any orch writes"))
            })
            .collect::<Result<Vec<_>, _>>()?;

        // Every task runs something or has children (else it could never finish).
        let mut has_children = vec![false; n];
        for p in parent.iter().flatten() {
            has_children[*p as usize] = true;
        }
        if let Some(t) = (0..n).find(|&t| !nodes[t].runs && !has_children[t]) {
            return Err(format!("task {t} has nothing to run and no children"));
        }

        let by_id = column(&self.by_id, "id order")?;
        let mut seen = vec![false; n];
        for (k, &t) in by_id.iter().enumerate() {
            if std::mem::replace(&mut seen[in_range(t, "the id order")? as usize], true) {
                return Err(format!("the id order lists task {t} twice"));
            }
            if k > 0 && ids.id(by_id[k - 1]) >= ids.id(t) {
                return Err(format!("the id order is not sorted at task {t}"));
            }
        }

        let waves = self.declared_waves(&parent, in_range)?;
        let titles = sparse(&self.titles, n, "title")?;
        let costs = sparse(&self.costs, n, "cost")?;
        let parts = Parts { ids, parent, waves, deps_at, deps, nodes, by_id: Some(by_id), titles, costs };
        Ok((parts, run))
    }

    /// The declared waves, checked to partition the children of every parent that has
    /// any: each lists children of its own parent only, no task twice.
    fn declared_waves(
        &self,
        parent: &[Option<TaskIdx>],
        in_range: impl Fn(u32, &str) -> Result<u32, String>,
    ) -> Result<Vec<DeclaredWave>, String> {
        let n = parent.len();
        let mut listed = vec![false; n];
        // Per parent (`NONE` for the run): its children, and how many declared waves list.
        let mut children: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
        for p in parent {
            children.entry(p.unwrap_or(NONE)).or_default().0 += 1;
        }
        let mut waves = Vec::with_capacity(self.waves.len());
        for (w, wave) in self.waves.iter().enumerate() {
            let owner = match wave.parent {
                NONE => None,
                p => Some(in_range(p, "a wave's parent")?),
            };
            let tasks = numbers(&wave.tasks, "wave")?;
            if tasks.is_empty() || wave.cap == Some(0) {
                return Err(format!("wave {w} is empty or capped at 0"));
            }
            for (k, &t) in tasks.iter().enumerate() {
                in_range(t, "a wave")?;
                if (k > 0 && tasks[k - 1] >= t) || std::mem::replace(&mut listed[t as usize], true) {
                    return Err(format!("wave {w} lists task {t} out of order or a second time"));
                }
                if parent[t as usize] != owner {
                    return Err(format!("wave {w} lists task {t}, which is not a child of the wave's parent"));
                }
            }
            children.entry(wave.parent).or_default().1 += tasks.len();
            let (cap, on_failure, wake) = (wave.cap, wave.on_failure, wave.wake);
            waves.push(DeclaredWave { parent: owner, tasks, cap, on_failure, wake });
        }
        for (p, (all, in_waves)) in children {
            if in_waves != 0 && in_waves != all {
                let owner = if p == NONE { "the run".to_string() } else { format!("task {p}") };
                return Err(format!("{in_waves} of the {all} children of {owner} are in its declared waves"));
            }
        }
        Ok(waves)
    }
}

/// Fails when following parents from some task comes back to it.
fn no_parent_loop(parent: &[Option<TaskIdx>]) -> Result<(), String> {
    // 0: not seen; 1: on the chain being followed; 2: known to reach the run.
    let mut state = vec![0u8; parent.len()];
    let mut chain = Vec::new();
    for t in 0..parent.len() {
        let mut at = Some(t as TaskIdx);
        while let Some(x) = at.filter(|&x| state[x as usize] != 2) {
            if state[x as usize] == 1 {
                return Err(format!("task {x}'s parents lead back to it"));
            }
            state[x as usize] = 1;
            chain.push(x);
            at = parent[x as usize];
        }
        for x in chain.drain(..) {
            state[x as usize] = 2;
        }
    }
    Ok(())
}

/// Fails when the `after` rows (task `t` after `deps[deps_at[t]..deps_at[t + 1]]`) loop.
fn no_after_loop(n: usize, deps_at: &[u32], deps: &[TaskIdx]) -> Result<(), String> {
    // Kahn's algorithm over the dependents.
    let mut unmet: Vec<u32> = (0..n).map(|t| deps_at[t + 1] - deps_at[t]).collect();
    let (dependents_at, dependents) = dependents_of(n, deps_at, deps);
    let mut ready: Vec<TaskIdx> = (0..n as TaskIdx).filter(|&t| unmet[t as usize] == 0).collect();
    let mut done = 0;
    while let Some(t) = ready.pop() {
        done += 1;
        for &x in &dependents[dependents_at[t as usize] as usize..dependents_at[t as usize + 1] as usize] {
            unmet[x as usize] -= 1;
            if unmet[x as usize] == 0 {
                ready.push(x);
            }
        }
    }
    match done == n {
        true => Ok(()),
        false => Err(format!("{} tasks are in a loop of `after`", n - done)),
    }
}

/// A per-task list (sorted by task, each task once) as a map.
fn sparse<T: Clone>(list: &[(u32, T)], n: usize, what: &str) -> Result<BTreeMap<TaskIdx, T>, String> {
    let mut map = BTreeMap::new();
    for (k, (t, v)) in list.iter().enumerate() {
        if *t as usize >= n || (k > 0 && list[k - 1].0 >= *t) {
            return Err(format!("the {what}s are not one per task, in task order"));
        }
        map.insert(*t, v.clone());
    }
    Ok(map)
}
