"""``farslip segment`` cold (fresh process, empty text cache): the shipped path vs the old padded text encoding.

    .venv/bin/python benchmarks/segment_cold.py [--model farslip-vitb16] [--size 512] [--repeats 1]

Each case is the real command, ``farslip_ext.cli.main(["segment", IMAGE, "--classes", ..., "--model",
MODEL, "--pretrained", "random", "--progress", ...])``, in its own child process with its own empty
``$FARSLIP_CACHE`` (so the text embeddings are computed: the first call a user makes), timed from the
child's start (imports included) to its exit. The image is a random 512×512 RGB PNG, 5 classes x the 80
OpenAI templates (400 prompts at the 248-token LongCLIP context of ``farslip-vitb16``). Random weights:
the time does not depend on them, and nothing is downloaded.

* ``new``: the command as shipped (prompts sorted by length and encoded trimmed,
  :func:`farslip_ext.models.text.encode_texts_bucketed`);
* ``old``: the same command with that function replaced, in the child only, by what the text
  embeddings used before: ``model.encode_text`` on chunks of 256 prompts at the full context.

Cases run interleaved (new, old, new, ... ``--repeats`` rounds). Prints one JSON line per run
(``seconds``, ``text_seconds`` = the time inside ``compute_text_embeddings``, whether the text progress bar
was drawn on stderr) and a summary with the medians and ``new_over_old``. Times are never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, machine  # noqa: E402

CLASSES = "building;road;tree;low vegetation;car"

CHILD = r"""
import json, sys, time
t_start = float(sys.argv[1]); case = sys.argv[2]; argv = json.loads(sys.argv[3])
import torch
import farslip_ext.models.text as text_mod
import farslip_ext.ovss.text as ovss_text
if case == "old":
    @torch.no_grad()
    def padded(model, tokens, batch_size=256, *, normalize=False, progress=False):
        chunks = range(0, tokens.shape[0], batch_size)
        if callable(progress):
            chunks = progress(chunks, total=len(chunks))
        return torch.cat([model.encode_text(tokens[i:i + batch_size], normalize=normalize) for i in chunks])
    text_mod.encode_texts_bucketed = padded
spent = []
inner = ovss_text.compute_text_embeddings
def timed(*a, **k):
    t0 = time.perf_counter(); out = inner(*a, **k); spent.append(time.perf_counter() - t0); return out
ovss_text.compute_text_embeddings = timed
from farslip_ext.cli import main
rc = main(argv)
print("@@" + json.dumps({"rc": rc, "text_seconds": sum(spent), "text_calls": len(spent),
                         "seconds": time.time() - t_start}), flush=True)
"""


def run_case(case: str, image: str, out_dir: str, model: str, threads: int) -> dict:
    cache = tempfile.mkdtemp(prefix=f"farslip-seg-{case}-")
    env = dict(os.environ, FARSLIP_CACHE=cache, HF_HUB_OFFLINE="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    argv = ["segment", image, "--classes", CLASSES, "--model", model, "--pretrained", "random", "--progress",
            "--device", "cpu", "--precision", "fp32", "-o", os.path.join(out_dir, f"{case}.seg.png"), "--overwrite"]
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", CHILD, repr(t0), case, json.dumps(argv)], capture_output=True,
                       text=True, env=env)
    wall = time.time() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{case}: rc={p.returncode}\n{p.stderr[-3000:]}")
    rec = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("@@")][-1][2:])
    rec.update(case=case, wall_s=round(wall, 3), seconds=round(rec["seconds"], 3),
               text_seconds=round(rec["text_seconds"], 3),
               progress_bar_seen="text embeddings (400 prompts)" in p.stderr)
    return rec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="farslip-vitb16")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=1, help="rounds of (new, old); a final new run closes them")
    p.add_argument("--no-old", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    import numpy as np
    from PIL import Image

    work = tempfile.mkdtemp(prefix="farslip-seg-bench-")
    image = os.path.join(work, "scene.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(image)
    import torch

    emit({"bench": "segment_cold", "machine": machine(), "model": args.model, "size": args.size,
          "classes": CLASSES.count(";") + 1, "threads": args.threads or torch.get_num_threads()})
    res = {"new": [], "old": []}
    order = ["new"] + (["old", "new"] * args.repeats if not args.no_old else ["new"] * args.repeats)
    for case in order:
        r = run_case(case, image, work, args.model, args.threads)
        res[case].append(r)
        emit(r)
    summary = {"case": "summary"}
    for case, rs in res.items():
        if rs:
            summary[f"{case}_s"] = round(statistics.median(r["seconds"] for r in rs), 3)
            summary[f"{case}_text_s"] = round(statistics.median(r["text_seconds"] for r in rs), 3)
    if res["old"]:
        summary["new_over_old"] = round(summary["new_s"] / summary["old_s"], 4)
        summary["text_speedup"] = round(summary["old_text_s"] / summary["new_text_s"], 2)
    emit(summary)


if __name__ == "__main__":
    main()
