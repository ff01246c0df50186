# UAVid test_gt, 1280x1080 crops: moving car merged into car, 255 = padding.
# Benchmark facts for farslip_ext.ovss (read without mmseg); the published table joins on `name`.
_base_ = './_base_/farslip_ovss.py'

benchmark = dict(
    name='UAVid',
    roots=['UAVid'],  # folders under --data-root; the first is what `farslip ovss-convert uavid` writes
    raw_label_values=list(range(7)) + [255],  # values a label file may hold on disk (before reduce_zero_label)
    official_release='test_gt/<seq>/{Images,Labels}/<frame>.png (colour labels)',
    prepare='farslip ovss-convert uavid <official-release-folder> --data-root <data-root>',
    notes='moving car (7) is merged into car (3); 255 = padding',
    presets=dict(segearth=dict(prob_thd=0.3, bg_idx=0)),  # docs/reference/ovss-evaluation.md#18-per-dataset-settings
)
model = dict(class_names='classnames:cls_uavid.txt')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='UAVidDataset',
        data_root='data/UAVid',
        data_prefix=dict(img_path='img_dir/test', seg_map_path='ann_dir/test'),
        img_suffix='.png',
        seg_map_suffix='.png',
        reduce_zero_label=False,
    ))
