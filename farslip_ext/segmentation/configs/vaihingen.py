# Vaihingen (ovss-protocol.md §1.8, §2.4, §5): IRRG false-colour images; label 0 = boundary, ignored through reduce_zero_label=True.
# Class names: registry/classnames/cls_vaihingen.txt. SegEarth-OV settings (preset 'segearth'): prob_thd=0.1, bg_idx=5, cls_token_lambda=-0.3.
_base_ = './_base_/farslip_ovss.py'

model = dict(class_names='catalogue:cls_vaihingen.txt')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='ISPRSDataset',
        data_root='data/vaihingen',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        reduce_zero_label=True,
    ))
