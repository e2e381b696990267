//! The waits-for graph of a spec and the search for its cycles: two nodes per task (its
//! command may run; it is done) and one per wave (the wave is closed), so big waves stay
//! linear; iterative, because specs may hold a million tasks.

use super::*;

pub(super) const NONE: u32 = u32::MAX;

pub(super) struct WaitsFor {
    pub(super) tasks: usize,
    /// Compressed adjacency: the edges of node n are `targets[offsets[n]..offsets[n + 1]]`.
    pub(super) offsets: Vec<u32>,
    pub(super) targets: Vec<u32>,
}

impl WaitsFor {
    pub(super) fn build(
        spec: &Spec,
        after_offsets: &[usize],
        after_targets: &[u32],
        structure: &Structure,
    ) -> WaitsFor {
        let tasks = spec.tasks.len();
        let nodes = 2 * tasks + spec.waves.len();
        let run = |t: usize| (2 * t) as u32;
        let done = |t: usize| (2 * t + 1) as u32;
        let wave = |w: usize| (2 * tasks + w) as u32;

        let mut edges: Vec<(u32, u32)> = Vec::with_capacity(3 * tasks);
        for index in 0..tasks {
            edges.push((done(index), run(index)));
            // Unknown names and self-references are reported on their own, and left out.
            let targets = after_targets.get(after_offsets[index]..after_offsets[index + 1]).unwrap_or_default();
            edges.extend(targets.iter().map(|&other| (run(index), done(other as usize))));
            if let Owner::Task(parent) = structure.parent[index] {
                if !structure.in_parent_loop[index] {
                    edges.push((run(index), run(parent)));
                    edges.push((done(parent), done(index)));
                }
            }
            if let Some(previous) = structure.wave_of[index].and_then(|w| structure.previous_wave[w]) {
                edges.push((run(index), wave(previous)));
            }
        }
        for (index, members) in structure.wave_members.iter().enumerate() {
            if structure.wave_owner[index] == Owner::Unknown {
                continue;
            }
            edges.extend(members.iter().map(|&task| (wave(index), done(task))));
            if let Some(previous) = structure.previous_wave[index] {
                edges.push((wave(index), wave(previous)));
            }
        }

        // Counting sort into compressed rows; edge order within a row stays declaration order.
        let mut offsets = vec![0u32; nodes + 1];
        for &(from, _) in &edges {
            offsets[from as usize + 1] += 1;
        }
        for n in 0..nodes {
            offsets[n + 1] += offsets[n];
        }
        let mut fill = offsets.clone();
        let mut targets = vec![0u32; edges.len()];
        for (from, to) in edges {
            let slot = &mut fill[from as usize];
            targets[*slot as usize] = to;
            *slot += 1;
        }
        WaitsFor { tasks, offsets, targets }
    }

    pub(super) fn nodes(&self) -> usize {
        self.offsets.len() - 1
    }

    pub(super) fn edges(&self, node: u32) -> &[u32] {
        let node = node as usize;
        &self.targets[self.offsets[node] as usize..self.offsets[node + 1] as usize]
    }

    /// One cycle per strongly connected component that has one, as the list of nodes
    /// from its first-declared task's node, each waiting for the next (the last for the first).
    pub(super) fn cycles(&self) -> Vec<Vec<u32>> {
        let components = self.components();
        let mut component_of = vec![NONE; self.nodes()];
        for (c, members) in components.iter().enumerate() {
            for &node in members {
                component_of[node as usize] = c as u32;
            }
        }
        let mut came_from = vec![NONE; self.nodes()];
        let mut cycles = Vec::with_capacity(components.len());
        for (c, members) in components.iter().enumerate() {
            // Start at the first-declared task (run node before done node): every
            // component holds task nodes, since wave nodes alone form no cycle.
            let Some(&start) = members.iter().filter(|&&n| (n as usize) < 2 * self.tasks).min() else {
                continue;
            };
            if let Some(cycle) = self.shortest_cycle(start, c as u32, &component_of, &mut came_from) {
                cycles.push(cycle);
            }
        }
        cycles
    }

    /// Breadth-first search from `start` within its component, back to `start`.
    pub(super) fn shortest_cycle(
        &self,
        start: u32,
        component: u32,
        component_of: &[u32],
        came_from: &mut [u32],
    ) -> Option<Vec<u32>> {
        let mut queue = std::collections::VecDeque::from([start]);
        let mut touched = vec![start];
        came_from[start as usize] = start;
        let mut last = None;
        'search: while let Some(node) = queue.pop_front() {
            for &next in self.edges(node) {
                if next == start {
                    last = Some(node);
                    break 'search;
                }
                if component_of[next as usize] == component && came_from[next as usize] == NONE {
                    came_from[next as usize] = node;
                    touched.push(next);
                    queue.push_back(next);
                }
            }
        }
        let mut cycle = Vec::new();
        if let Some(mut node) = last {
            while node != start {
                cycle.push(node);
                node = came_from[node as usize];
            }
            cycle.push(start);
            cycle.reverse();
        }
        for node in touched {
            came_from[node as usize] = NONE;
        }
        (!cycle.is_empty()).then_some(cycle)
    }

    /// Strongly connected components with more than one node (iterative Tarjan: a
    /// dependency chain of a million tasks must not overflow the stack).
    pub(super) fn components(&self) -> Vec<Vec<u32>> {
        let nodes = self.nodes();
        let mut index = vec![NONE; nodes];
        let mut low = vec![0u32; nodes];
        let mut on_stack = vec![false; nodes];
        let mut stack: Vec<u32> = Vec::new();
        // (node, position of the next edge to look at)
        let mut calls: Vec<(u32, u32)> = Vec::new();
        let mut counter = 0u32;
        let mut components = Vec::new();
        for root in 0..nodes as u32 {
            if index[root as usize] != NONE {
                continue;
            }
            index[root as usize] = counter;
            low[root as usize] = counter;
            counter += 1;
            stack.push(root);
            on_stack[root as usize] = true;
            calls.push((root, self.offsets[root as usize]));
            while let Some(&mut (node, ref mut next_edge)) = calls.last_mut() {
                let n = node as usize;
                if *next_edge < self.offsets[n + 1] {
                    let next = self.targets[*next_edge as usize];
                    *next_edge += 1;
                    let m = next as usize;
                    if index[m] == NONE {
                        index[m] = counter;
                        low[m] = counter;
                        counter += 1;
                        stack.push(next);
                        on_stack[m] = true;
                        calls.push((next, self.offsets[m]));
                    } else if on_stack[m] {
                        low[n] = low[n].min(index[m]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(caller, _)) = calls.last() {
                    low[caller as usize] = low[caller as usize].min(low[n]);
                }
                if low[n] == index[n] {
                    let mut members = Vec::new();
                    while let Some(member) = stack.pop() {
                        on_stack[member as usize] = false;
                        members.push(member);
                        if member == node {
                            break;
                        }
                    }
                    if members.len() > 1 {
                        components.push(members);
                    }
                }
            }
        }
        components
    }
}

/// One step of a cycle between two tasks, with why the first waits for the second.
pub(super) struct Hop {
    pub(super) from: usize,
    pub(super) to: usize,
    pub(super) kind: HopKind,
}

#[derive(Clone, Copy)]
pub(super) enum HopKind {
    /// `from` lists `to` in `after`.
    After,
    /// `to` is `from`'s parent, whose command runs first.
    ParentCommand,
    /// `to` is `from`'s child.
    Child,
    /// `from` waits for this wave to close, and `to` is in it.
    Wave(usize),
}

/// Collapses a cycle of graph nodes into hops between tasks: a task's own run → done
/// link disappears, and a path through wave nodes becomes one hop.
pub(super) fn hops(cycle: &[u32], tasks: usize) -> Vec<Hop> {
    let task_of = |node: u32| (node as usize) / 2;
    let is_wave = |node: u32| node as usize >= 2 * tasks;
    let is_run = |node: u32| node.is_multiple_of(2);
    let mut hops = Vec::new();
    // (task, wave waited for) while walking through wave nodes
    let mut pending: Option<(usize, usize)> = None;
    for (i, &from) in cycle.iter().enumerate() {
        let to = cycle[(i + 1) % cycle.len()];
        if is_wave(from) {
            let Some((waiting, _)) = pending else { continue };
            if is_wave(to) {
                pending = Some((waiting, to as usize - 2 * tasks));
            } else if let Some((waiting, wave)) = pending.take() {
                hops.push(Hop { from: waiting, to: task_of(to), kind: HopKind::Wave(wave) });
            }
            continue;
        }
        if is_wave(to) {
            pending = Some((task_of(from), to as usize - 2 * tasks));
            continue;
        }
        let (a, b) = (task_of(from), task_of(to));
        let kind = match (is_run(from), is_run(to)) {
            (true, false) => HopKind::After,
            (true, true) => HopKind::ParentCommand,
            (false, false) => HopKind::Child,
            (false, true) => continue, // a task's done waits for its own run
        };
        hops.push(Hop { from: a, to: b, kind });
    }
    hops
}
