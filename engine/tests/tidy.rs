//! Tidy: the pure core must not read a clock, a random source, the environment or the
//! file system, and must not use randomly keyed hash maps. A grep, so a new import
//! cannot slip in unnoticed (the drivers in `runtime/` and `sim.rs` are exempt).

use std::path::Path;

/// Files of the pure core, relative to `engine/src`.
const CORE: &[&str] = &[
    "aggregate.rs",
    "core.rs",
    "digest.rs",
    "graph.rs",
    "graph/build.rs",
    "graph/grow.rs",
    "graph/image.rs",
    "graph/image_check.rs",
    "graph/image_tests.rs",
    "view.rs",
    "record.rs",
    "record/control.rs",
    "record/decode.rs",
    "record/started.rs",
    "scheduler.rs",
    "state/mod.rs",
    "state/apply.rs",
    "state/consequences.rs",
    "state/lifecycle.rs",
    "state/requests.rs",
    "state/start.rs",
    "state/submit.rs",
    "spec/ids.rs",
    "spec/mod.rs",
    "spec/model.rs",
    "spec/validate/mod.rs",
    "spec/validate/places.rs",
    "spec/validate/structure.rs",
    "spec/validate/waits_for.rs",
    "spec/parse.rs",
    "spec/task_wire.rs",
    "spec/toml_places.rs",
    "spec/simulated.rs",
];

const FORBIDDEN: &[(&str, &str)] = &[
    ("Instant::now", "a clock"),
    ("SystemTime", "a clock"),
    ("std::time::Instant", "a clock"),
    ("thread_rng", "a random source"),
    ("rand::", "a random source"),
    ("RandomState", "a randomly keyed hash"),
    ("std::collections::HashMap", "a randomly keyed hash map"),
    ("std::collections::HashSet", "a randomly keyed hash set"),
    ("std::env", "the environment"),
    ("tokio", "the async runtime"),
    ("std::process", "processes"),
];

#[test]
fn the_pure_core_has_no_io_clock_or_randomness() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for file in CORE {
        let text = std::fs::read_to_string(src.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (needle, what) in FORBIDDEN {
                if code.contains(needle) {
                    found.push(format!("engine/src/{file}:{}: {what}: {}", n + 1, line.trim()));
                }
            }
            // Reading files is allowed only where a spec file is loaded.
            if code.contains("std::fs") && *file != "spec/parse.rs" {
                found.push(format!("engine/src/{file}:{}: the file system: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "the pure core reaches outside:\n{}", found.join("\n"));
}

#[test]
fn every_core_file_is_listed() {
    // A new module under state/ or spec/ must be added to CORE (or moved out of the core).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for dir in ["state", "spec", "spec/validate", "graph", "record"] {
        for entry in std::fs::read_dir(src.join(dir)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                continue;
            }
            let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
            assert!(CORE.contains(&name.as_str()), "{name} is not in CORE");
        }
    }
}
