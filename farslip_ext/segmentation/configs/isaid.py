# iSAID (ovss-protocol.md §1.8, §2.4, §5): labels are <image>_instance_color_RGB.png (single-channel indices despite the name); 255 = padding.
# Class names: registry/classnames/cls_isaid.txt. SegEarth-OV settings (preset 'segearth'): prob_thd=0.4, bg_idx=0, cls_token_lambda=-0.3.
_base_ = './_base_/farslip_ovss.py'

model = dict(class_names='catalogue:cls_isaid.txt')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='iSAIDDataset',
        data_root='data/iSAID',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
    ))
