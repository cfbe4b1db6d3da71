"""The processes of a benchmark: starting and stopping them, and sampling their CPU and memory.

:class:`ProcSampler` also samples the local stack's servers, the bench process and the whole
machine, so a run can say how much CPU went to other work; :func:`machine` describes the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import REPO
from streams.settings import Settings, load_settings

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- process sampling


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, in seconds (from /proc/<pid>/stat)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int | str, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status, e.g. VmHWM (peak RSS) or VmRSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def stack_pids() -> dict[str, int]:
    """Pids of the local stack's servers (to tell their CPU from other work on the machine)."""
    from streams.stack.local import LocalStack

    stack = LocalStack(load_settings().stack_home, say=lambda _: None)
    found = {}
    for name in ("kafka", "registry", "prometheus"):
        pid = stack.running_pid(name)
        if pid is not None:
            found[name] = pid
    return found


class ProcSampler(threading.Thread):
    """Samples CPU seconds and peak RSS of the processes under test every ``interval`` seconds.

    Also samples the broker, the registry, this (the bench) process and the whole machine, so a
    run can say how much CPU went to work that is none of these (other users of the machine).
    """

    def __init__(self, pids: Sequence[int], interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="proc-sampler")
        self.pids = list(pids)
        self.known = {**stack_pids(), "bench": os.getpid()}
        self.interval = interval
        # (wall time, cpu of the processes under test, cpu of the known others, machine busy)
        self.samples: list[tuple[float, float, float, float]] = []
        self.hwm_kb: dict[int, int] = {pid: 0 for pid in self.pids}
        self.cpu_last: dict[int, float] = {pid: 0.0 for pid in [*self.pids, *self.known.values()]}
        self._halt = threading.Event()

    def sample(self) -> None:
        now = time.time()
        for pid in self.cpu_last:
            cpu = proc_cpu_seconds(pid)
            if cpu is not None:
                self.cpu_last[pid] = cpu
        for pid in self.pids:
            hwm = proc_status_kb(pid, "VmHWM")
            if hwm is not None:
                self.hwm_kb[pid] = max(self.hwm_kb[pid], hwm)
        under_test = sum(self.cpu_last[p] for p in self.pids)
        known = sum(self.cpu_last[p] for p in self.known.values())
        self.samples.append((now, under_test, known, machine_busy_seconds()))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self.sample()
        self._halt.set()

    def _at(self, when: float, column: int) -> float:
        before = [(s[0], s[column]) for s in self.samples if s[0] <= when]
        after = [(s[0], s[column]) for s in self.samples if s[0] >= when]
        if not before:
            return after[0][1] if after else 0.0
        if not after:
            return before[-1][1]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)

    def cpu_at(self, when: float) -> float:
        """CPU seconds of the processes under test at ``when`` (linear between samples)."""
        return self._at(when, 1)

    def window(self, start: float, end: float) -> dict[str, float]:
        """Cores used in [start, end] by the processes under test, the stack and bench, others."""
        span = max(end - start, 1e-9)
        sut = (self._at(end, 1) - self._at(start, 1)) / span
        known = (self._at(end, 2) - self._at(start, 2)) / span
        busy = (self._at(end, 3) - self._at(start, 3)) / span
        return {
            "cores_under_test": round(sut, 2),
            "cores_stack_and_bench": round(known, 2),
            "cores_other_work": round(max(busy - sut - known, 0.0), 2),
        }


# --------------------------------------------------------------------------- subprocesses


def python_env(settings: Settings, prefix: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "CONSENTINEL_TOPIC_PREFIX": prefix,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.setdefault("PYTHONPATH", str(REPO))
    return env


def signing_key(work_dir: Path) -> str:
    """Return the path of the benchmark gates' signing key, made once under ``work_dir``.

    A gate refuses to start without ``CONSENTINEL_SIGNING_KEY`` (contract section 6), and the
    benchmark measures the gate as deployed: signing its chain heads.
    """
    from streams.core.checkpoint import PRIVATE_KEY_FILE, generate_key_pair

    private = work_dir / "keys" / PRIVATE_KEY_FILE
    if not private.exists():
        generate_key_pair(private.parent)
    return str(private)


def start(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path = REPO
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
        )


def stop(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = 60) -> None:
    """SIGTERM each process we started, then SIGKILL whatever has not exited after ``grace_s``."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = proc_status_kb("self", "VmRSS")  # placeholder if meminfo is unreadable
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gb": round((mem_kb or 0) / 1024 / 1024, 1),
        "kernel": os.uname().release,
    }
