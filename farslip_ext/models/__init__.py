"""Model-side FarSLIP pieces on top of open_clip: dense patch features, dense-attention variants,
the LongCLIP text positions, QuickGELU checks."""
from farslip_ext.models import dense_attn  # noqa: F401  (registers the DENSE_ATTN variants)
from farslip_ext.models.dense import DenseFeatureExtractor, DenseOutput, dense_forward
from farslip_ext.models.dense_attn import DenseAttention, build_dense_attention
from farslip_ext.models.longclip import enable_long_clip_training, open_clip_state_dict, stretch_positional_embedding
from farslip_ext.models.quickgelu import QuickGELUWarning, uses_quick_gelu, warn_if_not_quick_gelu

__all__ = [
    "DenseAttention",
    "DenseFeatureExtractor",
    "DenseOutput",
    "QuickGELUWarning",
    "build_dense_attention",
    "dense_forward",
    "enable_long_clip_training",
    "open_clip_state_dict",
    "stretch_positional_embedding",
    "uses_quick_gelu",
    "warn_if_not_quick_gelu",
]
