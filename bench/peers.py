#!/usr/bin/env python3
"""The runner behind bench/peers.sh (which installs the peers and builds the binaries
first; run that, not this). Runs every workload with every tool alternately, RUNS rounds,
the order of the tools rotated each round, and prints medians and orch/peer ratios as
markdown. Environment: RUNS, QUICK, ORCH, SPAWNER, READRATE, WORK, REPO, SIM_SCALE_SIZES,
SIM_LOG_TASKS, ONLY (comma list of workload numbers, e.g. ONLY=1,2), ORCH_BASE (a second orch
binary run alongside on workload 1, e.g. a build of an older commit), DURABILITY (a comma list
of other `--durability` values, e.g. batch:10,never, each run as one more tool on workload 1).
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.environ["REPO"]
WORK = os.environ["WORK"]
ORCH = os.environ["ORCH"]
SPAWNER = os.environ["SPAWNER"]
READRATE = os.environ["READRATE"]
ORCH_BASE = os.environ.get("ORCH_BASE", "")  # optional: a second orch binary to compare on workload 1
DURABILITY = [d for d in os.environ.get("DURABILITY", "").split(",") if d.strip()]
QUICK = os.environ.get("QUICK", "") not in ("", "0")
RUNS = int(os.environ.get("RUNS", "2" if QUICK else "5"))
ONLY = {int(x) for x in os.environ.get("ONLY", "1,2,3,4,5").split(",") if x.strip()}
GEN = os.path.join(REPO, "bench", "gen.py")
DEVNULL = subprocess.DEVNULL
N_FLAT = 2000
SIM_LOG_TASKS = int(os.environ.get("SIM_LOG_TASKS", "333332"))  # 3N+4 records = 1,000,000


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def gen(*args):
    subprocess.run([sys.executable, GEN, *map(str, args)], check=True)


def timed(argv, cwd=None, stdin=None, capture=False):
    """Wall seconds of one invocation (and its stdout when capture)."""
    fin = open(stdin) if stdin else DEVNULL
    try:
        t = time.perf_counter()
        p = subprocess.run(argv, cwd=cwd, stdin=fin, stdout=subprocess.PIPE if capture else DEVNULL, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t
    finally:
        if stdin:
            fin.close()
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(argv)}\n{p.stderr.decode(errors='replace')[-2000:]}")
    return (dt, p.stdout.decode()) if capture else dt


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def alternate(tools, rounds):
    """tools: [(name, prepare() or None, run() -> seconds)]; every round runs each tool
    once, starting one later each round. Returns {name: [seconds...]}."""
    samples = {name: [] for name, _, _ in tools}
    for r in range(rounds):
        k = r % len(tools)
        for name, prepare, run in tools[k:] + tools[:k]:
            if prepare:
                prepare()
            samples[name].append(run())
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {samples[n][-1]:.3f}s" for n, _, _ in tools))
    return samples


def med(v):
    return statistics.median(v)


def spread(v):
    return f"{min(v):.3f}–{max(v):.3f}"


def table_vs(title, samples, tasks, orch_name="orch"):
    o = med(samples[orch_name])
    out = [f"#### {title}", "", f"{RUNS} runs each, alternating; median wall time of the whole command. The last "
           "column pairs the runs of one round (the load drifts between rounds, less within one): the median of "
           "the per-round ratios, and their range.", "",
           "| tool | median | min–max (s) | tasks/s | orch / tool (medians) | orch / tool (per round) |",
           "|---|---:|---:|---:|---:|---:|"]
    for name, v in samples.items():
        m = med(v)
        if name == orch_name:
            ratio, paired = "1", "1"
        else:
            rounds = [a / b for a, b in zip(samples[orch_name], v)]
            ratio, paired = f"{o / m:.2f}", f"{med(rounds):.3f} ({min(rounds):.2f}–{max(rounds):.2f})"
        out.append(f"| {name} | {m:.3f} s | {spread(v)} | {tasks / m:,.0f} | {ratio} | {paired} |")
    return "\n".join(out) + "\n"


def orch_run(spec, j, store_root, extra=(), orch=None):
    store = os.path.join(store_root, "store")
    shutil.rmtree(store, ignore_errors=True)
    dt, out = timed([orch or ORCH, "run", spec, "-j", str(j), "--json", "--store", store, *extra], capture=True)
    shutil.rmtree(store, ignore_errors=True)
    return dt, json.loads(out.strip().splitlines()[-1])


def ninja_clean(d):
    def prepare():
        for f in (".ninja_log", ".ninja_deps"):
            try:
                os.remove(os.path.join(d, f))
            except FileNotFoundError:
                pass
    return prepare


def workload1():
    d = os.path.join(WORK, "flat")
    gen("flat", d, N_FLAT)
    spec, args = os.path.join(d, "flat.toml"), os.path.join(d, "args")
    tmp = fresh(os.path.join(WORK, "orch-flat"))
    tools = [
        ("orch", None, lambda: orch_run(spec, 2, tmp)[0]),
        ("spawner (limit)", None, lambda: timed([SPAWNER, str(N_FLAT), "2", "/bin/true"])),
        ("make -j2", None, lambda: timed(["make", "-s", "-j2", "-f", "Makefile", "all"], cwd=d)),
        ("xargs -P2", None, lambda: timed(["xargs", "-P2", "-n1", "/bin/true"], stdin=args)),
        ("ninja -j2", ninja_clean(d), lambda: timed(["ninja", "-j2"], cwd=d)),
        ("parallel -j2", None, lambda: timed(["parallel", "--will-cite", "-j2", "/bin/true"], stdin=args)),
    ]
    if ORCH_BASE:
        # Another orch binary (an older commit) in the same rounds: a before/after ratio
        # that the machine's load cannot skew.
        tmp_base = fresh(os.path.join(WORK, "orch-flat-base"))
        tools.insert(1, ("orch (base)", None, lambda: orch_run(spec, 2, tmp_base, orch=ORCH_BASE)[0]))
    for i, durability in enumerate(DURABILITY):
        # What the group commit costs: the same binary under another durability policy.
        tmp_d = fresh(os.path.join(WORK, f"orch-flat-d{i}"))
        run = lambda tmp_d=tmp_d, durability=durability: orch_run(spec, 2, tmp_d, ["--durability", durability])[0]
        tools.insert(1 + i, (f"orch --durability {durability}", None, run))
    log(f"workload 1: {N_FLAT} x /bin/true at -j2")
    s = alternate(tools, RUNS)
    return s, table_vs(f"1. {N_FLAT:,} independent `/bin/true`, concurrency 2", s, N_FLAT)


def workload2():
    d = os.path.join(WORK, "dag")
    gen("dag", d, 40, 50)
    spec = os.path.join(d, "dag.toml")
    tmp = fresh(os.path.join(WORK, "orch-dag"))
    tools = [
        ("orch", None, lambda: orch_run(spec, 2, tmp)[0]),
        ("make -j2", None, lambda: timed(["make", "-s", "-j2", "-f", "Makefile", "all"], cwd=d)),
        ("ninja -j2", ninja_clean(d), lambda: timed(["ninja", "-j2"], cwd=d)),
    ]
    log("workload 2: layered DAG 40 x 50, 2 deps each, -j2")
    s = alternate(tools, RUNS)
    return s, table_vs("2. Layered DAG: 2,000 nodes (40 layers × 50, 2 random deps each, seed 42), concurrency 2", s, 2000)


def workload3():
    d = os.path.join(WORK, "sleep")
    gen("sleep", d, 16, "0.5")
    spec, args = os.path.join(d, "sleep.toml"), os.path.join(d, "args")
    tmp = fresh(os.path.join(WORK, "orch-sleep"))
    recorded = []

    def orch():
        dt, summary = orch_run(spec, 8, tmp)
        recorded.append(summary["attempt_ms"] / summary["wall_ms"])
        return dt

    tools = [
        ("orch", None, orch),
        ("make -j8", None, lambda: timed(["make", "-s", "-j8", "-f", "Makefile", "all"], cwd=d)),
        ("xargs -P8", None, lambda: timed(["xargs", "-P8", "-n1", "sleep"], stdin=args)),
    ]
    log("workload 3: 16 x sleep 0.5 at cap 8")
    s = alternate(tools, RUNS)
    serial = 16 * 0.5
    out = ["#### 3. 16 × `sleep 0.5`, cap 8 (ideal speedup 8×)", "",
           "Recorded = orch's own summary (sum of attempt_ms / wall_ms, from the log); "
           "wall = 8.0 s of serial sleeping / the whole command's wall time (process start, "
           "spec parse and log creation included).", "",
           "| tool | median wall | speedup (wall) | speedup (recorded) |", "|---|---:|---:|---:|"]
    for name, v in s.items():
        rec = f"{med(recorded):.2f}× ({min(recorded):.2f}–{max(recorded):.2f})" if name == "orch" else "—"
        out.append(f"| {name} | {med(v):.3f} s | {serial / med(v):.2f}× | {rec} |")
    s["orch recorded speedup"] = recorded
    return s, "\n".join(out) + "\n"


def workload4():
    sizes = os.environ.get("SIM_SCALE_SIZES", "10000,100000" if QUICK else "10000,100000,1000000")
    log(f"workload 4: sim_scale bench, sizes {sizes}")
    env = dict(os.environ, SIM_SCALE_SIZES=sizes)
    p = subprocess.run(["cargo", "bench", "-q", "-p", "orch-engine", "--bench", "sim_scale"], cwd=REPO, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    rows = [l for l in p.stdout.decode().splitlines() if l.startswith("|")]
    text = ["#### 4. Simulated scale (`cargo bench -p orch-engine --bench sim_scale`)", "",
            "Layered random DAGs (2 deps each, cap 64), simulated children, decisions + fold + encode + "
            "append to a real log (durability `never`); best of 3 runs (2 at 1M); peak RSS above the "
            "process's baseline.", "", *rows]
    return {"rows": rows}, "\n".join(text) + "\n"


def workload5():
    d = os.path.join(WORK, "sim")
    gen("sim", d, SIM_LOG_TASKS)
    store = fresh(os.path.join(WORK, "simstore"))
    log(f"workload 5: simulated run of {SIM_LOG_TASKS} tasks to make the log")
    dt, out = timed([ORCH, "run", "--sim", "--durability", "never", "--json", "--store", store,
                     os.path.join(d, "sim.json")], capture=True)
    summary = json.loads(out.strip().splitlines()[-1])
    runs = os.path.join(store, "runs")
    logdir = os.path.join(runs, os.listdir(runs)[0], "log")
    segs = sorted(os.path.join(logdir, f) for f in os.listdir(logdir) if f.endswith(".seg"))
    nbytes = sum(os.path.getsize(f) for f in segs)
    n = summary["records"]
    tools = [
        ("orch verify", None, lambda: timed([ORCH, "verify", "--json", logdir])),
        ("orch replay", None, lambda: timed([ORCH, "replay", "--json", logdir])),
        ("orch diff A A", None, lambda: timed([ORCH, "diff", "--json", logdir, logdir])),
        ("b3sum --num-threads 1", None, lambda: timed(["b3sum", "--num-threads", "1", *segs])),
        ("b3sum (all threads)", None, lambda: timed(["b3sum", *segs])),
    ]
    s = alternate(tools, RUNS)
    log("workload 5: in-process rates (bench/readrate)")
    _, rr = timed([READRATE, logdir, str(max(RUNS, 3))], capture=True)
    rr = json.loads(rr)
    mb = nbytes / 1e6
    b3 = med(s["b3sum --num-threads 1"])
    out = [f"#### 5. Reading a {n:,}-record log ({mb:.1f} MB in {len(segs)} segments)", "",
           f"The log: `orch run --sim` of {SIM_LOG_TASKS:,} simulated tasks (layered, 2 deps each, cap 64), "
           f"{dt:.2f} s for the whole command including parsing the "
           f"{os.path.getsize(os.path.join(d, 'sim.json')) / 1e6:.0f} MB JSON spec "
           f"({n / dt:,.0f} records/s end to end).", "",
           "Whole commands (process start, open, map, output included):", "",
           "| command | median | records/s | MB/s | vs `b3sum -t1` (rate) |", "|---|---:|---:|---:|---:|"]
    for name, v in s.items():
        m = med(v)
        out.append(f"| {name} | {m:.3f} s | {n / m:,.0f} | {mb / m:,.0f} | {b3 / m:.2f} |")
    inproc = [("blake3 raw (1 thread, bytes in memory)", rr["blake3_raw_s"]), ("`verify(dir)`", rr["verify_s"]),
              ("`read_records` (map, CRC, decode)", rr["decode_s"]), ("`State::fold`", rr["fold_s"]),
              ("`redecide` (fold + re-ask at every input)", rr["redecide_s"]),
              ("`diff(A, A)`, decisions level, records in memory", rr["diff_s"])]
    out += ["", f"In one process (`bench/readrate`, median of {max(RUNS, 3)}):", "",
            "| step | median | records/s | MB/s | vs blake3 raw (rate) |", "|---|---:|---:|---:|---:|"]
    for name, v in inproc:
        out.append(f"| {name} | {v * 1e3:.1f} ms | {n / v:,.0f} | {mb / v:,.0f} | {rr['blake3_raw_s'] / v:.2f} |")
    s["readrate"] = rr
    s["sim_run_s"] = dt
    return s, "\n".join(out) + "\n"


def main():
    results, tables = {}, []
    for i, w in enumerate([workload1, workload2, workload3, workload4, workload5], 1):
        if i in ONLY:
            s, t = w()
            results[i] = s
            tables.append(t)
            print(t, flush=True)
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    log(f"raw samples: {os.path.join(WORK, 'results.json')}")


if __name__ == "__main__":
    main()
