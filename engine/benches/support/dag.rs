// The layered random DAG of the simulated-scale bench (shared with the compile probe).
use orch_engine::spec::{Command, SimBehaviour, Spec, TaskSpec};

/// `n` tasks in layers of 1,000 (fewer when small), each depending on 2 pseudo-random
/// tasks of the previous layer; a fixed seed, so every run builds the same graph.
pub fn layered_dag(n: usize, cap: u32, seed: u64) -> Spec {
    let width = (n / 40).clamp(1, 1000);
    let mut rng = seed;
    let mut next = move || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    let mut spec = Spec::default();
    spec.run.max_concurrency = Some(cap);
    spec.tasks.reserve(n);
    for i in 0..n {
        let layer_start = i - i % width;
        let after = if layer_start == 0 {
            Vec::new()
        } else {
            let prev = layer_start - width;
            let a = prev + next() % width;
            let b = prev + next() % width;
            if a == b {
                vec![format!("n{a}")]
            } else {
                vec![format!("n{a}"), format!("n{b}")]
            }
        };
        spec.tasks.push(TaskSpec {
            id: format!("n{i}"),
            command: Some(Command::Shell("true".into())),
            after,
            sim: Some(Box::new(SimBehaviour { duration_ms: 1 + (next() % 5) as u64, ..SimBehaviour::default() })),
            ..TaskSpec::default()
        });
    }
    spec
}

