//! Times validating and compiling a large spec (a profiling aid for `Graph::compile`).
include!("../benches/support/dag.rs");
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let spec = layered_dag(n, 64, 42);
    let t = std::time::Instant::now();
    orch_engine::spec::validate(&spec, &orch_engine::spec::Unplaced("probe")).unwrap();
    let v = t.elapsed();
    let t = std::time::Instant::now();
    let g = orch_engine::graph::Graph::compile(spec, "probe").unwrap();
    let c = t.elapsed();
    let t = std::time::Instant::now();
    let json = serde_json::to_string(&g.spec).unwrap();
    let j = t.elapsed();
    println!("validate {v:?}; validate+compile {c:?}; spec to json {j:?} ({} bytes)", json.len());
}
