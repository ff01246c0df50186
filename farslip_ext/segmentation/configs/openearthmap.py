# OpenEarthMap (ovss-protocol.md §1.8, §2.4, §5): scores label 0 (unknown) as class 'background' (reduce_zero_label=False), as both reference repos do.
# Class names: registry/classnames/cls_openearthmap.txt. SegEarth-OV settings (preset 'segearth'): prob_thd=0.1, bg_idx=0, cls_token_lambda=-0.3.
_base_ = './_base_/farslip_ovss.py'

model = dict(class_names='catalogue:cls_openearthmap.txt')
test_dataloader = dict(
    batch_size=2,
    dataset=dict(
        type='OpenEarthMapDataset',
        data_root='data/OpenEarthMap',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
    ))
