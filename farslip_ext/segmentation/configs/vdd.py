# VDD test: src/*.JPG, gt/*.png (0..6).
# Benchmark facts for farslip_ext.ovss (read without mmseg); the published table joins on `name`.
_base_ = './_base_/farslip_ovss.py'

benchmark = dict(
    name='VDD',
    roots=['VDD'],  # folders under --data-root; the first is what `farslip ovss-convert vdd` writes
    raw_label_values=list(range(7)) + [255],  # values a label file may hold on disk (before reduce_zero_label)
    official_release='VDD/test/{src/*.JPG, gt/*.png}',
    prepare='farslip ovss-convert vdd <official-release-folder> --data-root <data-root>',
    notes='',
    presets=dict(segearth=dict(prob_thd=0.3, bg_idx=0)),  # docs/reference/ovss-evaluation.md#18-per-dataset-settings
)
model = dict(class_names='classnames:cls_vdd.txt')
test_dataloader = dict(
    batch_size=2,
    dataset=dict(
        type='VDDDataset',
        data_root='data/VDD',
        data_prefix=dict(img_path='test/src', seg_map_path='test/gt'),
        img_suffix='.JPG',
        seg_map_suffix='.png',
        reduce_zero_label=False,
    ))
