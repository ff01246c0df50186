# UDD5 val: src/*.JPG, gt/*.png (0..4); SegEarth-OV's folder is UDD/UDD/UDD5.
# Benchmark facts for farslip_ext.ovss (read without mmseg); the published table joins on `name`.
_base_ = './_base_/farslip_ovss.py'

benchmark = dict(
    name='UDD5',
    roots=['UDD5', 'UDD/UDD/UDD5'],  # folders under --data-root; the first is what `farslip ovss-convert udd5` writes
    raw_label_values=list(range(5)) + [255],  # values a label file may hold on disk (before reduce_zero_label)
    official_release='UDD5/val/{src/*.JPG, gt/*.png}',
    prepare='farslip ovss-convert udd5 <official-release-folder> --data-root <data-root>',
    notes='',
    presets=dict(segearth=dict(prob_thd=0.4, bg_idx=4)),  # docs/reference/ovss-evaluation.md#18-per-dataset-settings
)
model = dict(class_names='classnames:cls_udd5.txt')
test_dataloader = dict(
    batch_size=2,
    dataset=dict(
        type='UDD5Dataset',
        data_root='data/UDD5',
        data_prefix=dict(img_path='val/src', seg_map_path='val/gt'),
        img_suffix='.JPG',
        seg_map_suffix='.png',
        reduce_zero_label=False,
    ))
