"""Model-side FarSLIP pieces on top of open_clip: dense patch features, dense-attention variants,
the LongCLIP text positions, QuickGELU checks."""
