# LoveDA val: label 0 = no-data, ignored through reduce_zero_label=True; RS-OVSS spells the folder loveDA.
# Benchmark facts for farslip_ext.ovss (read without mmseg); the published table joins on `name`.
_base_ = './_base_/farslip_ovss.py'

benchmark = dict(
    name='LoveDA',
    roots=['LoveDA', 'loveDA'],  # folders under --data-root; the first is what `farslip ovss-convert loveda` writes
    raw_label_values=list(range(8)),  # values a label file may hold on disk (before reduce_zero_label)
    official_release='Val/{Rural,Urban}/{images_png,masks_png}/*.png (or Val.zip)',
    prepare='farslip ovss-convert loveda <official-release-folder> --data-root <data-root>',
    notes='0 = no-data (ignored through reduce_zero_label)',
    presets=dict(segearth=dict(prob_thd=0.3, bg_idx=0)),  # docs/reference/ovss-evaluation.md#18-per-dataset-settings
)
model = dict(class_names='classnames:cls_loveda.txt')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='LoveDADataset',
        data_root='data/LoveDA',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        img_suffix='.png',
        seg_map_suffix='.png',
        reduce_zero_label=True,
    ))
