"""Child processes of the tests: the environment every one of them gets (:func:`child_env`), and a
script started in a local gloo process group of several processes, as torchrun would (CPU only)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

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


#: The start of every rank's script (:func:`group_script`): ``module_dir`` importable, one thread, the
#: gloo group joined, ``out`` (the folder, a string) and ``rank`` set.
GROUP_START = """import json, sys
import torch, torch.distributed as dist
sys.path.insert(0, {module_dir!r})
import advkit
torch.set_num_threads(1)
dist.init_process_group("gloo")
out, rank = {out!r}, dist.get_rank()
"""
#: The end of every rank's script: no rank leaves the group while another still talks to it.
GROUP_END = """
dist.barrier()
dist.destroy_process_group()
"""


def group_script(out: Path, module_dir: Path, body: str) -> Path:
    """``out/child.py``: ``body`` between :data:`GROUP_START` and :data:`GROUP_END`, for :func:`run_group`."""
    script = out / "child.py"
    script.write_text(GROUP_START.format(module_dir=str(module_dir), out=str(out)) + body + GROUP_END)
    return script


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread inside the block, as each rank of a group runs (results depend on
    the thread count); the caller's count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
