# iSAID val, 896 crops with overlap 384: 0..15, 255 = padding.
# Benchmark facts for farslip_ext.ovss (read without mmseg); the published table joins on `name`.
_base_ = './_base_/farslip_ovss.py'

benchmark = dict(
    name='iSAID',
    roots=['iSAID'],  # folders under --data-root; the first is what `farslip ovss-convert isaid` writes
    raw_label_values=list(range(16)) + [255],  # values a label file may hold on disk (before reduce_zero_label)
    official_release='val/images/P*.png (DOTA), val/Semantic_masks/images/P*_instance_color_RGB.png (or their zips)',
    prepare='farslip ovss-convert isaid <official-release-folder> --data-root <data-root>',
    notes='896 crops with overlap 384; 255 = padding of small images',
    presets=dict(segearth=dict(prob_thd=0.4, bg_idx=0)),  # docs/reference/ovss-evaluation.md#18-per-dataset-settings
)
model = dict(class_names='classnames:cls_isaid.txt')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='iSAIDDataset',
        data_root='data/iSAID',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        img_suffix='.png',
        seg_map_suffix='_instance_color_RGB.png',
        reduce_zero_label=False,
    ))
