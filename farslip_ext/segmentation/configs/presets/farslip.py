# The `farslip` preset: the base config unchanged, i.e. the RS-OVSS protocol (eval_customized.py) that
# produced the published FarSLIP numbers (docs/reference/ovss-evaluation.md#17-segearth-ov-versus-rs-ovss).
description = 'FarSLIP-OVSS protocol of the published FarSLIP numbers (λ=0, no threshold, 224/112, long side 448)'
model = dict()
