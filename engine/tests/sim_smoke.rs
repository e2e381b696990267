//! Smoke: a small DAG with a retry runs to completion under simulation.
use orch_engine::record::Record;
use orch_engine::sim::simulate;
use orch_engine::spec::{parse, Format};

#[test]
fn small_dag_runs() {
    let spec = parse(
        r#"
[run]
max_concurrency = 2
[[task]]
id = "a"
command = "true"
[[task]]
id = "b"
command = "true"
after = ["a"]
retry = { max_attempts = 3, base_ms = 50 }
sim = { outcomes = ["fail:2", "succeed"] }
[[task]]
id = "c"
command = "true"
after = ["a"]
"#,
        "t.toml",
        Format::Toml,
    )
    .unwrap();
    let mut log: Vec<Record> = Vec::new();
    let state = simulate(spec.clone(), 1, |rs: &[Record]| -> Result<(), std::io::Error> {
        log.extend_from_slice(rs);
        Ok(())
    })
    .unwrap();
    for (i, r) in log.iter().enumerate() {
        println!("{}", r.to_json(i as u64));
        assert_eq!(Record::decode(&r.encode()).unwrap(), *r);
    }
    assert!(state.is_finished());
}
