# The `segearth` preset: SegEarth-OV's settings (eval.py + configs/cfg_*.py) without SimFeatUp
# (docs/reference/ovss-evaluation.md#14-feature-upsampling-in-segearth-ov-only). The per-dataset
# prob_thd / bg_idx are in each benchmark file (benchmark.presets.segearth).
description = 'SegEarth-OV settings without SimFeatUp (λ=-0.3, windows at their own size, per-dataset prob_thd/bg_idx)'
model = dict(cls_token_lambda=-0.3, window_mode='native')
