#!/usr/bin/env python3
"""Workload generators for bench/peers.sh.

Every workload is generated from ONE description into every tool's format, so all tools
run the same commands and (for the DAG) the same graph:

    gen.py flat  DIR N          N independent /bin/true: flat.toml, Makefile, build.ninja, args
    gen.py dag   DIR LAYERS W   layered DAG, each node after 2 pseudo-random nodes of the
                                previous layer (fixed seed): dag.toml, Makefile, build.ninja
    gen.py sleep DIR N SECS     N x `sleep SECS`: sleep.toml, Makefile, args
    gen.py sim   DIR N          N simulated tasks (layered, 2 deps each, width 1000) as JSON,
                                for a log of 3N+4 records: sim.json

Commands are plain strings without shell syntax, so orch and make exec them directly;
ninja always runs its commands through /bin/sh -c.
"""

import json
import os
import sys


def lcg(seed):
    """The same 64-bit LCG as engine/benches/sim_scale.rs (fixed seed, same graph every run)."""
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        yield state >> 33


def layered(layers, width, seed=42):
    """[(name, [deps])] in declaration order: layer 0 has no deps, every later node
    depends on 2 pseudo-random (distinct when possible) nodes of the previous layer."""
    rng = lcg(seed)
    nodes = []
    for layer in range(layers):
        for k in range(width):
            i = layer * width + k
            deps = []
            if layer > 0:
                prev = (layer - 1) * width
                a = prev + next(rng) % width
                b = prev + next(rng) % width
                deps = [f"n{a}"] if a == b else [f"n{a}", f"n{b}"]
            nodes.append((f"n{i}", deps))
    return nodes


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def toml_str(s):
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def emit_orch(path, name, nodes, command, cap):
    out = [f"[run]\nname = {toml_str(name)}\nmax_concurrency = {cap}\n"]
    for task, deps in nodes:
        out.append(f"\n[[task]]\nid = {toml_str(task)}\ncommand = {toml_str(command)}\n")
        if deps:
            out.append("after = [" + ", ".join(toml_str(d) for d in deps) + "]\n")
    write(path, "".join(out))


def emit_make(path, nodes, command):
    names = [t for t, _ in nodes]
    out = [".PHONY: all " + " ".join(names) + "\n", "all: " + " ".join(names) + "\n"]
    for task, deps in nodes:
        out.append(f"{task}: {' '.join(deps)}\n\t{command}\n")
    write(path, "".join(out))


def emit_ninja(path, nodes, command):
    # Outputs are never created, so every edge is dirty on every invocation (like .PHONY).
    out = [f"rule run\n  command = {command}\n\n"]
    for task, deps in nodes:
        # deps as explicit inputs: the same ordering as make prerequisites ($in is unused)
        out.append(f"build {task}: run" + ("".join(" " + x for x in deps)) + "\n")
    out.append("build all: phony " + " ".join(t for t, _ in nodes) + "\ndefault all\n")
    write(path, "".join(out))


def main():
    kind, d = sys.argv[1], sys.argv[2]
    os.makedirs(d, exist_ok=True)
    if kind == "flat":
        n = int(sys.argv[3])
        nodes = [(f"t{i}", []) for i in range(n)]
        emit_orch(os.path.join(d, "flat.toml"), "flat", nodes, "/bin/true", 2)
        emit_make(os.path.join(d, "Makefile"), nodes, "/bin/true")
        emit_ninja(os.path.join(d, "build.ninja"), nodes, "/bin/true")
        write(os.path.join(d, "args"), "".join(f"{i}\n" for i in range(n)))
    elif kind == "dag":
        layers, width = int(sys.argv[3]), int(sys.argv[4])
        nodes = layered(layers, width)
        emit_orch(os.path.join(d, "dag.toml"), "dag", nodes, "/bin/true", 2)
        emit_make(os.path.join(d, "Makefile"), nodes, "/bin/true")
        emit_ninja(os.path.join(d, "build.ninja"), nodes, "/bin/true")
    elif kind == "sleep":
        n, secs = int(sys.argv[3]), sys.argv[4]
        nodes = [(f"s{i}", []) for i in range(n)]
        emit_orch(os.path.join(d, "sleep.toml"), "sleep", nodes, f"sleep {secs}", 8)
        emit_make(os.path.join(d, "Makefile"), nodes, f"sleep {secs}")
        write(os.path.join(d, "args"), "".join(f"{secs}\n" for _ in range(n)))
    elif kind == "sim":
        n = int(sys.argv[3])
        width = max(1, min(1000, n // 40))
        rng = lcg(7)
        tasks = []
        for i in range(n):
            layer_start = i - i % width
            t = {"id": f"n{i}", "command": "true", "sim": {"duration_ms": 1 + next(rng) % 5}}
            if layer_start > 0:
                prev = layer_start - width
                a, b = prev + next(rng) % width, prev + next(rng) % width
                t["after"] = [f"n{a}"] if a == b else [f"n{a}", f"n{b}"]
            tasks.append(t)
        with open(os.path.join(d, "sim.json"), "w") as f:
            json.dump({"run": {"name": "sim", "max_concurrency": 64}, "tasks": tasks}, f, separators=(",", ":"))
    else:
        sys.exit(f"unknown workload {kind!r}")


if __name__ == "__main__":
    main()
