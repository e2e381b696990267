//! Run ids: exact, unique prefix, `latest`, unknown, ambiguous.

use super::{Scratch, TWO_TASKS};

#[test]
fn runs_resolve_by_id_prefix_and_latest() {
    let s = Scratch::new();
    let spec = s.write("ok.toml", TWO_TASKS);
    let mut ran = Vec::new();
    for _ in 0..3 {
        let v = s.orch(&["run", &spec, "--sim", "--json"]).code(0).json();
        ran.push(v["run"].as_str().unwrap().to_string());
    }
    // Ids sort by start time, even within one second, so `latest` is the last run.
    assert_eq!(s.run_ids(), ran);
    let latest = s.orch(&["show", "latest"]);
    latest.code(0);
    assert!(latest.stdout.starts_with(&format!("{} — succeeded", ran[2])), "{}", latest.stdout);

    // A unique prefix: one character past what the first id shares with the others.
    let shared = |a: &str, b: &str| a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let n = ran[1..].iter().map(|o| shared(&ran[0], o)).max().unwrap() + 1;
    let prefix = &ran[0][..n];
    let shown = s.orch(&["show", prefix]);
    assert!(shown.code(0).stdout.starts_with(&ran[0]), "{}", shown.stdout);
    s.orch(&["verify", prefix]).code(0).stdout_has("ok: ");

    // A prefix every run shares is ambiguous: exit 2, and every candidate is listed.
    let common = &ran[0][..shared(&ran[0], &ran[2])];
    let out = s.orch(&["show", common]);
    out.code(2).stderr_has("ambiguous");
    for id in &ran {
        out.stderr_has(id);
    }

    // A directory named like a reference, holding no log, does not hide the run.
    std::fs::create_dir(s.path().join("latest")).unwrap();
    let shadowed = s.orch(&["show", "latest"]);
    assert!(shadowed.code(0).stdout.starts_with(&ran[2]), "{}", shadowed.stdout);
    // A directory holding a run's log is taken as a path (`./` not needed).
    std::fs::rename(s.path().join(".orch/runs").join(&ran[0]), s.path().join("kept")).unwrap();
    s.orch(&["verify", "kept"]).code(0).stdout_has("ok: ");

    s.orch(&["show", "no-such-run"]).code(2).stderr_has("no run matches \"no-such-run\"");
    s.orch(&["replay", "19990101"]).code(2).stderr_has("no run matches");
    s.orch(&["log", "/no/such/dir"]).code(2).stderr_has("/no/such/dir");
    // An empty store has no `latest`.
    Scratch::new().orch(&["show", "latest"]).code(2).stderr_has("no run matches \"latest\"");
}
