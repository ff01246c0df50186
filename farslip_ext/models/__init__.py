"""Model-side FarSLIP pieces on top of open_clip: dense patch features of any supported ViT tower
(open_clip ViTs, timm ViT / SigLIP / EVA02 trunks), the dense-attention variants, the LongCLIP text
positions, QuickGELU checks."""
from farslip_ext.models import dense_attn  # noqa: F401  (registers the DENSE_ATTN variants)
from farslip_ext.models.dense import DenseFeatureExtractor, DenseOutput, dense_forward
from farslip_ext.models.dense_attn import DenseAttention, build_dense_attention, check_supported_tower
from farslip_ext.models.longclip import enable_long_clip_training, open_clip_state_dict, stretch_positional_embedding
from farslip_ext.models.quickgelu import QuickGELUWarning, uses_quick_gelu, warn_if_not_quick_gelu
from farslip_ext.models.towers import SUPPORTED_FAMILIES, Tower, UnsupportedTowerError, tower_of

__all__ = [
    "DenseAttention",
    "DenseFeatureExtractor",
    "DenseOutput",
    "QuickGELUWarning",
    "SUPPORTED_FAMILIES",
    "Tower",
    "UnsupportedTowerError",
    "build_dense_attention",
    "check_supported_tower",
    "dense_forward",
    "enable_long_clip_training",
    "open_clip_state_dict",
    "stretch_positional_embedding",
    "tower_of",
    "uses_quick_gelu",
    "warn_if_not_quick_gelu",
]
