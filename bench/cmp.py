#!/usr/bin/env python3
"""Paired comparison of commands: `python3 bench/cmp.py ROUNDS name=cmd ...` runs each
command once per round, in a rotating order, and prints the median wall time, CPU time
(user + sys of the command and the children it reaped) and machine busy time
(/proc/stat, all CPUs, kernel threads included), and the per-round median ratio to the
first command. @STORE@ in a command becomes a fresh temporary directory per run; CMP_CWD
sets the working directory."""
import os, sys, time, tempfile, shutil, statistics, subprocess
R = int(sys.argv[1]); tools = [a.split('=', 1) for a in sys.argv[2:]]
res = {n: [] for n, _ in tools}
def stat():
    with open('/proc/stat') as f:
        p = f.readline().split()[1:]
    v = list(map(int, p)); return sum(v) - v[3] - v[4], sum(v)
for r in range(R):
    order = tools[r % len(tools):] + tools[:r % len(tools)]
    for name, cmd in order:
        d = tempfile.mkdtemp(prefix='cmp')
        c = cmd.replace('@STORE@', d)
        b0, t0s = stat()
        t0 = time.perf_counter()
        p = subprocess.Popen(c, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=os.environ.get('CMP_CWD', '.'))
        _, st, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        b1, t1s = stat()
        shutil.rmtree(d, ignore_errors=True)
        res[name].append((wall, ru.ru_utime + ru.ru_stime, (b1 - b0) / 100))
first = tools[0][0]
for name, _ in tools:
    w = [x[0] for x in res[name]]; c = [x[1] for x in res[name]]; m = [x[2] for x in res[name]]
    ratio = [a[0] / b[0] for a, b in zip(res[name], res[first])]
    print(f"{name:14s} wall {statistics.median(w):.3f} ({min(w):.3f}-{max(w):.3f})  cpu {statistics.median(c):.3f}  machine-busy {statistics.median(m):.2f}  /{first} {statistics.median(ratio):.3f}")
