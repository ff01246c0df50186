"""Shared plumbing of the official-code drivers: one child process per measurement, whose ``sys.path``
starts with the official checkout, so that its vendored ``open_clip/`` shadows the pip one.

Nothing here imports open_clip or farslip_ext; the child imports only the checkout, torch and the
libraries the checkout itself needs.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

CHILD_FLAG = "--_child"


def spawn(script: str, argv: Sequence[str]) -> int:
    """Run ``script`` again as a child (``--_child`` + ``argv``) with a clean import path."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # nothing may come before the checkout
    env.setdefault("PYTHONNOUSERSITE", "1")
    return subprocess.run([sys.executable, os.path.abspath(script), CHILD_FLAG, *argv], env=env).returncode


def enter_checkout(repo: str) -> str:
    """Put ``repo`` first on ``sys.path`` and check that ``import open_clip`` resolves into it."""
    repo = os.path.realpath(repo)
    if not os.path.isdir(os.path.join(repo, "open_clip")):
        raise SystemExit(f"{repo} has no open_clip/ folder: not an official checkout "
                         "(see benchmarks/official/README.md)")
    if any(m == "open_clip" or m.startswith("open_clip.") for m in sys.modules):
        raise SystemExit("open_clip was imported before the checkout was put on sys.path")
    sys.path.insert(0, repo)
    import open_clip

    where = os.path.realpath(open_clip.__file__)
    if not where.startswith(repo + os.sep):
        raise SystemExit(f"import open_clip resolved to {where}, not into {repo}")
    return repo


def checkout_commit(repo: str) -> Optional[str]:
    """The commit of the checkout: ``git rev-parse HEAD`` in a work tree, else a ``.commit`` file
    written when it was unpacked (README), else ``None``."""
    try:
        out = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and os.path.exists(os.path.join(repo, ".git")):
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    path = os.path.join(repo, ".commit")
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip() or None
    return None


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> List[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (CPU: no sync needed)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux ``ru_maxrss`` is in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def record(what: str, seconds: List[float], **extra: object) -> Dict[str, object]:
    return {"what": what, "seconds": round(statistics.median(seconds), 4), "repeats": len(seconds),
            "all_seconds": [round(s, 4) for s in seconds], **extra}


def emit(rec: Dict[str, object]) -> None:
    print(json.dumps(rec), flush=True)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 square-matmul rate now (GFLOP/s): on a shared machine, shows how fast it was this run."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(timed(lambda: a @ b, repeats, warmup=0))
    return round(2 * n ** 3 / best / 1e9, 1)


def machine() -> Dict[str, object]:
    import platform

    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "fp32_matmul_gflops": matmul_gflops()}
