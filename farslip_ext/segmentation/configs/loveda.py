# LoveDA (ovss-protocol.md §1.8, §2.4, §5): label 0 = no-data, ignored through reduce_zero_label=True.
# Class names: registry/classnames/cls_loveda.txt. SegEarth-OV settings (preset 'segearth'): prob_thd=0.3, bg_idx=0, cls_token_lambda=-0.3.
_base_ = './_base_/farslip_ovss.py'

model = dict(class_names='catalogue:cls_loveda.txt')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='LoveDADataset',
        data_root='data/LoveDA',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        reduce_zero_label=True,
    ))
