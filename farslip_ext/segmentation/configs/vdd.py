# VDD (ovss-protocol.md §1.8, §2.4, §5): images are src/*.JPG (upper-case suffix), labels gt/*.png.
# Class names: registry/classnames/cls_vdd.txt. SegEarth-OV settings (preset 'segearth'): prob_thd=0.3, bg_idx=0, cls_token_lambda=-0.3.
_base_ = './_base_/farslip_ovss.py'

model = dict(class_names='catalogue:cls_vdd.txt')
test_dataloader = dict(
    batch_size=2,
    dataset=dict(
        type='VDDDataset',
        data_root='data/VDD',
        data_prefix=dict(img_path='test/src', seg_map_path='test/gt'),
    ))
