//! The compiled graph in a form made for loading, carried by the run-started record next
//! to the spec: folding a log then builds its graph from a few flat columns instead of
//! parsing and compiling the spec (for a 333k-task spec, ~30 ms against ~230 ms).
//!
//! It is derived data: the spec stays the record's truth. Every engine that compiles the
//! spec from a log (resume, replay) checks that the image is the one the spec compiles
//! to (`matches`); a fold trusts it after checking it is well formed (`image_check.rs`).
//! Columns of numbers are little-endian u32s in byte strings (MessagePack `bin`), so that
//! decoding them is a copy, not a value at a time.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{Graph, TaskIdx, WaveIdx};
use crate::spec::{OnStop, Priority, RunConfig, WakePolicy, WaveFailure};

/// No task (a parent that is the run itself).
pub(super) const NONE: u32 = u32::MAX;

/// The graph of a freshly compiled spec, as columns (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphImage {
    /// The run settings, as JSON (a small object; the spec's `[run]`).
    pub(super) run: String,
    /// Every id back to back; task `t`'s ends at `id_ends[t]`.
    pub(super) ids: String,
    pub(super) id_ends: ByteBuf,
    /// Each task's parent (its own, or its wave's), or `NONE`.
    pub(super) parents: ByteBuf,
    /// Each task's `after`, deduplicated and sorted: row `t` ends at `dep_ends[t]`.
    pub(super) dep_ends: ByteBuf,
    pub(super) deps: ByteBuf,
    /// Two bytes a task: see `pack` and `unpack`.
    pub(super) facts: ByteBuf,
    /// Every task, sorted by id.
    pub(super) by_id: ByteBuf,
    /// The tasks that have a title, or a cost.
    pub(super) titles: Vec<(u32, String)>,
    pub(super) costs: Vec<(u32, u64)>,
    /// Declared waves, in declaration order.
    pub(super) waves: Vec<WaveImage>,
}

/// A declared wave: its parent (or `NONE`), its tasks sorted, its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct WaveImage {
    pub parent: u32,
    pub tasks: ByteBuf,
    pub cap: Option<u32>,
    pub on_failure: WaveFailure,
    pub wake: WakePolicy,
}

impl GraphImage {
    /// The image of `graph`, which must be freshly compiled from a spec (not grown).
    pub fn of(graph: &Graph) -> GraphImage {
        let n = graph.len() as TaskIdx;
        let tasks = 0..n;
        let mut id_ends = Vec::with_capacity(graph.len());
        let mut end = 0u32;
        for t in tasks.clone() {
            end += graph.id(t).len() as u32;
            id_ends.push(end);
        }
        let declared = graph.waves.iter().enumerate().filter(|(_, w)| w.declared);
        GraphImage {
            run: serde_json::to_string(&graph.spec.run).expect("run settings always serialize"),
            ids: tasks.clone().map(|t| graph.id(t)).collect(),
            id_ends: column(id_ends),
            parents: column(tasks.clone().map(|t| graph.parent(t).unwrap_or(NONE))),
            dep_ends: column(graph.deps_at[1..].iter().copied()),
            deps: column(graph.deps.iter().copied()),
            facts: ByteBuf::from(graph.nodes.iter().flat_map(pack).collect::<Vec<u8>>()),
            by_id: column(graph.by_id.iter().copied()),
            titles: graph.titles.iter().map(|(&t, s)| (t, s.clone())).collect(),
            costs: graph.costs.iter().map(|(&t, &c)| (t, c)).collect(),
            waves: declared
                .map(|(w, wave)| WaveImage {
                    parent: graph.wave_parent(w as WaveIdx).unwrap_or(NONE),
                    tasks: column(wave.tasks.iter().copied()),
                    cap: wave.cap,
                    on_failure: wave.on_failure,
                    wake: wave.wake,
                })
                .collect(),
        }
    }

    /// At least the bytes its encoding takes (MessagePack adds at most 9 bytes a value).
    pub fn encoded_len_bound(&self) -> usize {
        let columns = [&self.id_ends, &self.parents, &self.dep_ends, &self.deps, &self.facts, &self.by_id];
        let titles: usize = self.titles.iter().map(|(_, t)| t.len() + 24).sum();
        let waves: usize = self.waves.iter().map(|w| w.tasks.len() + 64).sum();
        self.run.len()
            + self.ids.len()
            + columns.iter().map(|c| c.len() + 9).sum::<usize>()
            + titles
            + 24 * self.costs.len()
            + waves
            + 64
    }

    /// Whether this is the image of `graph` (freshly compiled from the spec the record
    /// carries): an image that is not would fold a different run than its spec describes.
    /// The run settings are compared as values, not as text, so that their JSON may
    /// change shape (a new field left out when unset) without failing older logs. What
    /// the columns mean is fixed by the record's kind: building graphs otherwise is a new
    /// kind (the goldens, which replay through this check, hold it to that).
    pub fn matches(&self, graph: &Graph) -> bool {
        // Destructured whole, so that a field added is a field compared.
        let GraphImage { run: _, ids, id_ends, parents, dep_ends, deps, facts, by_id, titles, costs, waves } =
            GraphImage::of(graph);
        let derived = (&ids, &id_ends, &parents, &dep_ends, &deps, &facts, &by_id, &titles, &costs, &waves);
        let carried = (
            &self.ids,
            &self.id_ends,
            &self.parents,
            &self.dep_ends,
            &self.deps,
            &self.facts,
            &self.by_id,
            &self.titles,
            &self.costs,
            &self.waves,
        );
        derived == carried && serde_json::from_str::<RunConfig>(&self.run).is_ok_and(|run| run == graph.spec.run)
    }
}

/// u32s as a little-endian byte string.
pub(super) fn column(values: impl IntoIterator<Item = u32>) -> ByteBuf {
    ByteBuf::from(values.into_iter().flat_map(u32::to_le_bytes).collect::<Vec<u8>>())
}

/// A byte string of little-endian u32s back; `what` names it in the error.
pub(super) fn numbers(bytes: &[u8], what: &str) -> Result<Vec<u32>, String> {
    if !bytes.len().is_multiple_of(4) {
        return Err(format!("the {what} column is {} bytes, not a multiple of 4", bytes.len()));
    }
    Ok(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// A node's own facts in two bytes: priority (2 bits), runs, hook, on_stop; then
/// `child_failure` and `child_wake`, each 0 for unset or 1 + the variant's position.
pub(super) fn pack(node: &super::Node) -> [u8; 2] {
    let flags = node.priority as u8
        | (node.runs as u8) << 2
        | (node.hook as u8) << 3
        | ((node.on_stop == OnStop::FinishRunning) as u8) << 4;
    // Exhaustive matches, so that a new variant cannot be written as an old one.
    let failure = match node.child_failure {
        None => 0,
        Some(WaveFailure::FailParent) => 1,
        Some(WaveFailure::WarnAndContinue) => 2,
        Some(WaveFailure::StopWave) => 3,
        Some(WaveFailure::Hold) => 4,
    };
    let wake = match node.child_wake {
        None => 0,
        Some(WakePolicy::OnWaveComplete) => 1,
        Some(WakePolicy::OnChildComplete) => 2,
    };
    [flags, failure | wake << 4]
}

/// The variants in the order of their codes (`pack`); a test checks the two agree.
const PRIORITIES: [Priority; 4] = [Priority::P0, Priority::P1, Priority::P2, Priority::P3];
const WAVE_FAILURES: [WaveFailure; 4] =
    [WaveFailure::FailParent, WaveFailure::WarnAndContinue, WaveFailure::StopWave, WaveFailure::Hold];
const WAKE_POLICIES: [WakePolicy; 2] = [WakePolicy::OnWaveComplete, WakePolicy::OnChildComplete];

/// `pack` undone into a node's facts; None for bits no `pack` writes.
pub(super) fn unpack([flags, policies]: [u8; 2]) -> Option<super::Node> {
    if flags >> 5 != 0 {
        return None;
    }
    Some(super::Node {
        priority: PRIORITIES[(flags & 3) as usize],
        runs: flags & 4 != 0,
        hook: flags & 8 != 0,
        on_stop: if flags & 16 != 0 { OnStop::FinishRunning } else { OnStop::CancelRunning },
        child_failure: optional(policies & 15, &WAVE_FAILURES)?,
        child_wake: optional(policies >> 4, &WAKE_POLICIES)?,
        ..super::Node::default()
    })
}

/// 0 for unset, else 1 + a position in `all`; None for a code past its end.
fn optional<T: Copy>(code: u8, all: &[T]) -> Option<Option<T>> {
    match code {
        0 => Some(None),
        c => all.get(c as usize - 1).copied().map(Some),
    }
}
