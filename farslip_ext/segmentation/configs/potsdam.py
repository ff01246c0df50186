# Potsdam (ovss-protocol.md §1.8, §2.4, §5): label 0 = boundary/undefined, ignored through reduce_zero_label=True.
# Class names: registry/classnames/cls_potsdam.txt. SegEarth-OV settings (preset 'segearth'): prob_thd=0.1, bg_idx=5, cls_token_lambda=-0.3.
_base_ = './_base_/farslip_ovss.py'

model = dict(class_names='catalogue:cls_potsdam.txt')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='PotsdamDataset',
        data_root='data/potsdam',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        reduce_zero_label=True,
    ))
