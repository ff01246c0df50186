# ISPRS Potsdam val, 512 crops: label 0 = boundary/undefined, ignored through reduce_zero_label=True.
# Benchmark facts for farslip_ext.ovss (read without mmseg); the published table joins on `name`.
_base_ = './_base_/farslip_ovss.py'

benchmark = dict(
    name='Potsdam',
    roots=['potsdam', 'Potsdam'],  # folders under --data-root; the first is what `farslip ovss-convert potsdam` writes
    raw_label_values=list(range(7)),  # values a label file may hold on disk (before reduce_zero_label)
    official_release='2_Ortho_RGB/top_potsdam_<i>_<j>_RGB.tif, 5_Labels_all_noBoundary/top_potsdam_<i>_<j>_label_noBoundary.tif (or their zips)',
    prepare='farslip ovss-convert potsdam <official-release-folder> --data-root <data-root>',
    notes='0 = boundary/undefined (ignored through reduce_zero_label)',
    presets=dict(segearth=dict(prob_thd=0.1, bg_idx=5)),  # docs/reference/ovss-evaluation.md#18-per-dataset-settings
)
model = dict(class_names='classnames:cls_potsdam.txt')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='PotsdamDataset',
        data_root='data/potsdam',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        img_suffix='.png',
        seg_map_suffix='.png',
        reduce_zero_label=True,
    ))
