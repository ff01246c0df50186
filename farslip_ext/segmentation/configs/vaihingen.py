# ISPRS Vaihingen val, 512 crops (IRRG): label 0 = boundary, ignored through reduce_zero_label=True.
# Benchmark facts for farslip_ext.ovss (read without mmseg); the published table joins on `name`.
_base_ = './_base_/farslip_ovss.py'

benchmark = dict(
    name='Vaihingen',
    roots=['vaihingen', 'Vaihingen'],  # folders under --data-root; the first is what `farslip ovss-convert vaihingen` writes
    raw_label_values=list(range(7)),  # values a label file may hold on disk (before reduce_zero_label)
    official_release='top/top_mosaic_09cm_area<N>.tif (IRRG), top_mosaic_09cm_area<N>_noBoundary.tif (eroded ground truth) (or their zips)',
    prepare='farslip ovss-convert vaihingen <official-release-folder> --data-root <data-root>',
    notes='IRRG false colour; 0 = boundary (ignored through reduce_zero_label)',
    presets=dict(segearth=dict(prob_thd=0.1, bg_idx=5)),  # docs/reference/ovss-evaluation.md#18-per-dataset-settings
)
model = dict(class_names='classnames:cls_vaihingen.txt')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='ISPRSDataset',
        data_root='data/vaihingen',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        img_suffix='.png',
        seg_map_suffix='.png',
        reduce_zero_label=True,
    ))
