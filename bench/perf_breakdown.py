#!/usr/bin/env python3
"""Buckets the samples of `perf record -g` of `orch run` (see bench/profile.sh) by what
orch was doing: reads `perf script` output on stdin, the orch process's pid as argv[1].

Each sample of the orch process (all its threads) is assigned to the first bucket whose
pattern appears in its call chain (leaf to root, patterns tried in order); samples of
other pids are the children (/bin/true: exec, dynamic loader, exit) and are reported as
one line. Percentages are of all samples (orch + children).
"""

import collections
import re
import sys

# (bucket, regex over the frame's symbol), first match from the leaf wins within the
# ordered list: more specific buckets first.
BUCKETS = [
    ("log: fdatasync (group-commit thread)", r"syncer::run|fdatasync|sync_data"),
    ("spawn: start_ticks (boot clock, or /proc/PID/stat)", r"start_ticks|boot_ticks"),
    ("exit: reap on SIGCHLD (waitid, output size, group check)", r"reaper::|OutputFiles>::collect|OutputFiles::collect|signal_group"),
    ("exit: tokio's SIGCHLD stream (handler, pipe)", r"signal::unix|signal::registry|Child>::try_wait|wait4"),
    # Not a bare `clone3`: every thread's stack starts in glibc's clone3 (pthread_create).
    ("spawn: clone (CLONE_VM, CLONE_VFORK) + exec handoff", r"spawner::Context>?::spawn|spawner::|__spawni|Command>::spawn"),
    # Kernel-only chains (no user frame unwound): the clone's kernel side...
    ("spawn: the kernel's side of clone (copy_process)", r"copy_process|dup_fd|copy_creds|cgroup_can_fork|kernel_clone|alloc_vmap_area|copy_mm"),
    ("spawn: the rest (argv, env, output files)", r"process::spawn|process::start|capture_env|run_vars"),
    ("log: append + write (Journal)", r"journal::Journal|orch_log_format::writer|Writer>::|__libc_write|ksys_write"),
    ("scheduler + fold (pure core)", r"orch_engine::scheduler|orch_engine::state|State>::apply|decide"),
    ("record encoding", r"Record>::encode|rmp_serde|serde"),
    ("tokio: park / epoll / timers / task polling", r"tokio::runtime|epoll|park"),
    ("startup / spec parse / exit of orch", r"spec::|toml|parse|_dl_|exit_group|lang_start|clap"),
    # ...and wakeups and context switches (the kernel's scheduler on orch's threads).
    ("kernel: wakeups and context switches", r"_raw_spin_unlock_irq|finish_task_switch|try_to_wake_up|schedule"),
]
COMPILED = [(name, re.compile(p)) for name, p in BUCKETS]


def samples(stream):
    head, frames = None, []
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            if head:
                yield head, frames
            head, frames = None, []
        elif head is None:
            head = line
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else parts[0])
    if head:
        yield head, frames


def main():
    orch_pid = sys.argv[1]
    counts, children, total = collections.Counter(), 0, 0
    for head, frames in samples(sys.stdin):
        m = re.match(r"\s*(.+?)\s+(\d+)/(\d+)\s", head)
        if not m:
            continue
        total += 1
        if m.group(2) != orch_pid:
            children += 1
            continue
        chain = " ".join(frames)
        for name, rx in COMPILED:
            if rx.search(chain):
                counts[name] += 1
                break
        else:
            counts["other (orch)"] += 1
    orch = sum(counts.values())
    print(f"| where | share of all samples | share of orch's samples |")
    print(f"|---|---:|---:|")
    print(f"| children (/bin/true: exec, ld.so, exit), incl. the vfork child before exec | {children / total:.1%} | — |")
    print(f"| **orch (all its threads)** | **{orch / total:.1%}** | 100% |")
    for name, c in counts.most_common():
        print(f"| {name} | {c / total:.1%} | {c / orch:.1%} |")
    print(f"\n{total} samples")


if __name__ == "__main__":
    main()
