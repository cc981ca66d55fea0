"""Child processes of the tests: the environment every one of them gets (:func:`child_env`), and a
script started in a local gloo process group of several processes, as torchrun would (CPU only)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child Python process: one intra-op thread (results and speed
    depend on the thread count, and the xdist workers already fill the cores), no CUDA device (the
    tests run on the CPU, whatever the machine has), advkit and tests/ importable; then ``extra``."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_group(script: Path, world: int = 2, timeout: float = 180, args: tuple[str, ...] = ()) -> list[str]:
    """Run ``script`` in ``world`` processes (environment as torchrun sets it: ``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``/``PORT``; otherwise :func:`child_env`'s); their outputs, once all exited with
    status 0 (AssertionError with every output otherwise)."""
    env = child_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(world))
    procs = [subprocess.Popen([sys.executable, str(script), *args],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": str(world)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(world)]
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0] * world, "\n".join(logs)
    return logs
