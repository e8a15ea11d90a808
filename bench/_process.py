"""One command as a fresh process: wall time and its own peak RSS (for the bench scripts).

A child's ru_maxrss (wait4, or getrusage in the child) is not the child's alone: Linux carries
the high-water mark of the memory image a process had before exec, i.e. the parent's RSS at the
fork. A bench that made a 200k-patch slide in memory would read ~1 GB for `/bin/true`. So the
command is started by a small launcher process (its own pre-exec image is the big parent's; its
child's is the launcher's few MB), which times it and reads its rusage.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

_LAUNCHER = r"""
import json, os, sys, time
t = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t
with open(sys.argv[1], "w") as f:
    json.dump({"wall_s": wall, "peak_mb": ru.ru_maxrss / 1024, "rc": os.waitstatus_to_exitcode(status)}, f)
"""


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, stderr tail) of ``cmd``; exits with its stderr if it fails."""
    with tempfile.TemporaryDirectory() as d:
        rec = Path(d) / "rusage.json"
        p = subprocess.run([sys.executable, "-c", _LAUNCHER, str(rec), *cmd], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        err = p.stderr.decode(errors="replace")
        r = json.loads(rec.read_text()) if rec.is_file() else {"rc": p.returncode}
    if r["rc"] != 0:
        sys.exit(f"{Path(cmd[0]).name} {' '.join(cmd[1:4])} ... failed ({r['rc']}):\n{err[-2000:]}")
    return r["wall_s"], r["peak_mb"], err[-500:]


def own_peak_mb() -> float:
    """This process's peak RSS in MB since its exec (VmHWM: unlike ru_maxrss, not the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource   # not Linux: the rusage high-water mark (may include the parent's)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
