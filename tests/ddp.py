"""Start W local processes the way ``torchrun`` does (gloo on loopback), bounded in time.

Used by the tests: every process gets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1`` and a free ``MASTER_PORT``.
When one process fails the others are stopped after ``grace_s`` (torchrun does
the same), and everything is killed after ``timeout_s``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    args: list[str],
    world_size: int,
    *,
    timeout_s: float = 120.0,
    grace_s: float = 30.0,
    env: dict | None = None,
    cwd: str | None = None,
) -> list[tuple[int, str, str]]:
    """Run ``python *args`` as ``world_size`` processes; ``[(returncode, stdout, stderr)]`` by rank.

    A process still running at ``timeout_s`` (or ``grace_s`` after another one
    failed) is killed and reports return code -9.
    """
    port = free_port()
    procs = []
    logs = []
    for rank in range(world_size):
        e = {
            **os.environ,
            **(env or {}),
            "RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1",
        }
        if world_size == 1:
            for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
                e.pop(key)
        files = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # no pipe to fill up
        logs.append(files)
        procs.append(
            subprocess.Popen([sys.executable, *args], env=e, cwd=cwd, stdout=files[0], stderr=files[1], text=True)
        )
    deadline = time.monotonic() + timeout_s
    failed_at = None
    while any(p.poll() is None for p in procs):
        now = time.monotonic()
        if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
            failed_at = now
        if now > deadline or (failed_at is not None and now > failed_at + grace_s):
            for p in procs:
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(0.05)
    results = []
    for p, (out, err) in zip(procs, logs):
        p.wait()
        out.seek(0)
        err.seek(0)
        results.append((p.returncode, out.read(), err.read()))
        out.close()
        err.close()
    return results
