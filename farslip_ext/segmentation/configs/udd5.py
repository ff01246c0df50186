# UDD5 (ovss-protocol.md §1.8, §2.4, §5): images are src/*.JPG (upper-case suffix), labels gt/*.png.
# Class names: registry/classnames/cls_udd5.txt. SegEarth-OV settings (preset 'segearth'): prob_thd=0.4, bg_idx=4, cls_token_lambda=-0.3.
_base_ = './_base_/farslip_ovss.py'

model = dict(class_names='catalogue:cls_udd5.txt')
test_dataloader = dict(
    batch_size=2,
    dataset=dict(
        type='UDD5Dataset',
        data_root='data/UDD5',
        data_prefix=dict(img_path='val/src', seg_map_path='val/gt'),
    ))
