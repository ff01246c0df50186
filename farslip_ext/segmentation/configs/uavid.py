# UAVid (ovss-protocol.md §1.8, §2.4, §5): 1280x1080 crops of the test_gt sequences; 255 = padding.
# Class names: registry/classnames/cls_uavid.txt. SegEarth-OV settings (preset 'segearth'): prob_thd=0.3, bg_idx=0, cls_token_lambda=-0.3.
_base_ = './_base_/farslip_ovss.py'

model = dict(class_names='catalogue:cls_uavid.txt')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='UAVidDataset',
        data_root='data/UAVid',
        data_prefix=dict(img_path='img_dir/test', seg_map_path='ann_dir/test'),
    ))
