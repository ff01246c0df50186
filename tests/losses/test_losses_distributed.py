"""The losses under torch.distributed: 2 gloo processes (CPU), each holding half of the batch, against
one process holding the whole batch (docs/reference/method.md §1.5, §2.3).

What is true, and asserted:

* ``GlobalITCLoss`` (open_clip ``ClipLoss``, ``gather_with_grad=False``): every rank computes the loss of
  the *global* batch (other ranks' features are gathered without gradient, the local slice is
  re-inserted), so the value equals the single-process loss. The gradient of the local features is the
  partial derivative of that same function w.r.t. the local rows, i.e. it equals the corresponding rows
  of the single-process gradient; the ranks' gradients concatenated give the single-process gradient
  once, so after DDP's *averaging* a parameter gets 1/world_size of the single-process gradient.
  ``d loss / d logit_scale`` equals the single-process one on every rank.
* ``RegionCategoryLoss`` (all-gather *with* gradient): the value equals the single-process loss; the
  all-gather backward sums the gradients of all ranks' (identical) losses, so each rank's local rows get
  ``world_size`` times the single-process gradient, and DDP's average gives exactly the single-process
  parameter gradient. Ranks may hold different row counts (3 and 5 here).
* ``PaddedRegionITCLoss`` (``ClipLoss`` logits, no gradient through the gather): like the global ITC,
  value equal, local gradients equal to the single-process rows, padded rows get zero gradient.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from farslip_ext.losses import GlobalITCLoss, PaddedRegionITCLoss, RegionCategoryLoss

WORLD = 2
MPCL_SPLIT = (3, 5)  # ragged: rank 0 holds 3 regions, rank 1 holds 5
PAD_TO = 4


def _inputs() -> dict:
    g = torch.Generator().manual_seed(1234)

    def unit(n, d=6):
        return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)

    return {
        "img": unit(8), "txt": unit(8), "scale": torch.tensor(9.0, dtype=torch.float64),
        "v": unit(8), "t": unit(8),
        # categories shared across ranks (2 at ranks 0 and 1, 5 at both), and ignored rows on both ranks
        "labels": torch.tensor([2, -1, 5, 2, 7, 5, -1, 5]),
        "pv": unit(2 * PAD_TO), "pt": unit(2 * PAD_TO),
        "pvalid": torch.tensor([True, True, False, True, True, False, True, False]),
    }


def _local(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    return x[lo:hi].clone().requires_grad_(True)


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        d = torch.load(os.path.join(out_dir, "inputs.pt"))
        res = {}

        lo, hi = rank * 4, rank * 4 + 4
        img, txt = _local(d["img"], lo, hi), _local(d["txt"], lo, hi)
        scale = d["scale"].clone().requires_grad_(True)
        loss = GlobalITCLoss()(img, txt, scale)["global_itc_loss"]
        loss.backward()
        res["itc"] = [loss.detach(), img.grad, txt.grad, scale.grad]

        lo = 0 if rank == 0 else MPCL_SPLIT[0]
        hi = lo + MPCL_SPLIT[rank]
        v, t = _local(d["v"], lo, hi), _local(d["t"], lo, hi)
        scale = d["scale"].clone().requires_grad_(True)
        loss = RegionCategoryLoss()(v, t, scale, labels=d["labels"][lo:hi])["region_itc_loss"]
        loss.backward()
        res["mpcl"] = [loss.detach(), v.grad, t.grad, scale.grad]

        v, t = _local(d["v"], lo, hi), _local(d["t"], lo, hi)
        empty = RegionCategoryLoss()(v, t, d["scale"], labels=torch.full((hi - lo,), -1))["region_itc_loss"]
        empty.backward()
        res["mpcl_empty"] = [empty.detach(), v.grad, t.grad]

        lo, hi = rank * PAD_TO, rank * PAD_TO + 3  # 3 real rows per rank, padded to PAD_TO by the loss
        v, t = _local(d["pv"], lo, hi), _local(d["pt"], lo, hi)
        scale = d["scale"].clone().requires_grad_(True)
        loss = PaddedRegionITCLoss(pad_to=PAD_TO)(v, t, scale, valid=d["pvalid"][lo:hi])["region_itc_loss"]
        loss.backward()
        res["padded"] = [loss.detach(), v.grad, t.grad, scale.grad]

        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    data = _inputs()
    torch.save(data, out / "inputs.pt")
    # fork (Linux) starts the ranks in well under a second; spawn re-imports torch and open_clip in each
    # child (5-20 s on the 2 shared test cores). Each rank runs single-threaded, on gloo.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(
        _worker, args=(WORLD, str(out / "rendezvous"), str(out)), nprocs=WORLD, join=True, start_method=method
    )
    return data, [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.clone().requires_grad_(True)


def test_global_itc_two_ranks_vs_one_process(two_ranks):
    d, ranks = two_ranks
    img, txt, scale = _leaf(d["img"]), _leaf(d["txt"]), _leaf(d["scale"])
    full = GlobalITCLoss()(img, txt, scale)["global_itc_loss"]
    full.backward()
    ranks_itc = [x["itc"] for x in ranks]
    for r, (loss, gi, gt, gs) in enumerate(ranks_itc):
        assert torch.allclose(loss, full.detach(), rtol=1e-12)
        assert torch.allclose(gi, img.grad[4 * r: 4 * r + 4], atol=1e-12)
        assert torch.allclose(gt, txt.grad[4 * r: 4 * r + 4], atol=1e-12)
        assert torch.allclose(gs, scale.grad, atol=1e-12)
    # the ranks' local gradients tile the single-process gradient exactly once (-> DDP mean = 1/2 of it)
    assert torch.allclose(torch.cat([x[1] for x in ranks_itc]), img.grad, atol=1e-12)


def test_region_category_two_ranks_vs_one_process(two_ranks):
    d, ranks = two_ranks
    v, t, scale = _leaf(d["v"]), _leaf(d["t"]), _leaf(d["scale"])
    full = RegionCategoryLoss()(v, t, scale, labels=d["labels"])["region_itc_loss"]
    full.backward()
    assert full.item() > 0
    bounds = [(0, MPCL_SPLIT[0]), (MPCL_SPLIT[0], sum(MPCL_SPLIT))]
    for (lo, hi), res in zip(bounds, ranks):
        loss, gv, gt, gs = res["mpcl"]
        assert torch.allclose(loss, full.detach(), rtol=1e-12)
        # gather-with-grad backward sums the two ranks' identical losses' gradients -> 2x
        assert torch.allclose(gv, WORLD * v.grad[lo:hi], atol=1e-12)
        assert torch.allclose(gt, WORLD * t.grad[lo:hi], atol=1e-12)
        assert torch.allclose(gs, scale.grad, atol=1e-12)  # logit_scale is not gathered
        # ignored rows get no gradient
        ignored = (d["labels"][lo:hi] == -1).nonzero().flatten()
        assert torch.equal(gv[ignored], torch.zeros_like(gv[ignored]))
        empty, ev, et = res["mpcl_empty"]
        assert empty.item() == 0.0
        assert torch.equal(ev, torch.zeros_like(ev)) and torch.equal(et, torch.zeros_like(et))


def test_padded_region_itc_two_ranks_vs_one_process(two_ranks):
    d, ranks = two_ranks
    pieces_v = [_leaf(d["pv"][r * PAD_TO: r * PAD_TO + 3]) for r in range(WORLD)]
    pieces_t = [_leaf(d["pt"][r * PAD_TO: r * PAD_TO + 3]) for r in range(WORLD)]
    scale = _leaf(d["scale"])
    zero = torch.zeros(PAD_TO - 3, d["pv"].shape[1], dtype=torch.float64)
    # single-process layout = what the gather builds: [rank0 rows, zero pad, rank1 rows, zero pad]
    v = torch.cat([pieces_v[0], zero, pieces_v[1], zero])
    t = torch.cat([pieces_t[0], zero, pieces_t[1], zero])
    valid = torch.cat([d["pvalid"][0:3], torch.tensor([False]), d["pvalid"][PAD_TO: PAD_TO + 3], torch.tensor([False])])
    full = PaddedRegionITCLoss()(v, t, scale, valid=valid)["region_itc_loss"]
    full.backward()
    for r, res in enumerate(ranks):
        loss, gv, gt, gs = res["padded"]
        assert torch.allclose(loss, full.detach(), rtol=1e-12)
        assert torch.allclose(gv, pieces_v[r].grad, atol=1e-12)
        assert torch.allclose(gt, pieces_t[r].grad, atol=1e-12)
        assert torch.allclose(gs, scale.grad, atol=1e-12)
        invalid = (~d["pvalid"][r * PAD_TO: r * PAD_TO + 3]).nonzero().flatten()
        assert torch.equal(gv[invalid], torch.zeros_like(gv[invalid]))
