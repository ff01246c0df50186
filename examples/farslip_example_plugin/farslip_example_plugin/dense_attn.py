"""A dense-attention variant of the last ViT block, one ``DENSE_ATTN`` class."""
import torch
import torch.nn.functional as F

from farslip_ext.models import DenseAttention
from farslip_ext.registry import DENSE_ATTN


@DENSE_ATTN.register_module(name=["KK", "KKAttention"])
class KKAttention(DenseAttention):
    """softmax(k kᵀ s): key-key self-similarity (NACLIP without its neighbourhood prior)."""

    name = "KK"

    def mix(self, q, k, v, grid):
        return F.scaled_dot_product_attention(k, k, v)

    @staticmethod
    def reference_weights(q, k, v, grid):
        """The (T, T) attention matrix of one head, written out (for the generic variant test)."""
        return torch.softmax(k @ k.T / k.shape[-1] ** 0.5, dim=-1)
