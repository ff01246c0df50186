"""The self-check: build an architecture, run one image-text forward on the embedded scene.

It proves the install end to end (open_clip registration, tokenizer, both towers) without weights,
which cannot be downloaded everywhere. With ``pretrained`` set it loads released weights instead.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any, Dict, Optional, Sequence

import torch

__all__ = ["run_selfcheck"]

DEFAULT_PROMPTS = ("a satellite image of farmland", "a satellite image of a river",
                   "a satellite image of buildings", "a satellite image of a forest")


class _DropRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _expected_random_init(active: bool):
    """open_clip warns 'Model initialized randomly'; without --pretrained that is the point of the check."""
    flt = _DropRandomInitNotice()
    handlers = logging.getLogger().handlers if active else []
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


def run_selfcheck(arch: str = "farslip-vitb16", pretrained: Optional[str] = None,
                  prompts: Sequence[str] = DEFAULT_PROMPTS, device: str = "cpu") -> Dict[str, Any]:
    """Build ``arch`` (with ``pretrained`` weights, else random), encode the embedded image and ``prompts``."""
    from PIL import Image

    import farslip_ext
    from farslip_ext.assets import SELFCHECK_IMAGE

    t0 = time.perf_counter()
    with _expected_random_init(pretrained is None):
        model, _, preprocess = farslip_ext.create_model_and_transforms(arch, pretrained=pretrained, device=device)
    model.eval()
    tokenizer = farslip_ext.get_tokenizer(model, arch)
    t_build = time.perf_counter() - t0
    image = preprocess(Image.open(SELFCHECK_IMAGE).convert("RGB")).unsqueeze(0).to(device)
    text = tokenizer(list(prompts)).to(device)
    t1 = time.perf_counter()
    with torch.inference_mode():
        img = model.encode_image(image, normalize=True)
        txt = model.encode_text(text, normalize=True)
        probs = (100.0 * img @ txt.T).softmax(dim=-1)[0]
    t_fwd = time.perf_counter() - t1
    if not (torch.isfinite(img).all() and torch.isfinite(txt).all()):
        from farslip_ext.errors import NonFiniteWeightsError

        raise NonFiniteWeightsError(f"self-check of {arch} ({pretrained or 'random init'}): the embeddings hold NaN "
                                    f"or infinite values; the weights or the install are broken (reinstall, or try "
                                    f"--pretrained with another file)")
    return {
        "arch": arch,
        "pretrained": pretrained,
        "image": SELFCHECK_IMAGE.name,
        "image_embedding_shape": list(img.shape),
        "text_embedding_shape": list(txt.shape),
        "text_context_length": int(text.shape[1]),
        "probs": {p: round(float(v), 4) for p, v in zip(prompts, probs)},
        "build_s": round(t_build, 2),
        "forward_s": round(t_fwd, 2),
        "ok": True,
    }


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run_selfcheck(), indent=2))
