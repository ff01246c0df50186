# OpenEarthMap without xBD, val (docs/reference/ovss-evaluation.md#79-openearthmap-label-0): .tif images and labels 0..8.
# Benchmark facts for farslip_ext.ovss (read without mmseg); the published table joins on `name`.
_base_ = './_base_/farslip_ovss.py'

benchmark = dict(
    name='OpenEarthMap',
    roots=['OpenEarthMap'],  # folders under --data-root; the first is what `farslip ovss-convert openearthmap` writes
    raw_label_values=list(range(9)) + [255],  # values a label file may hold on disk (before reduce_zero_label)
    official_release='OpenEarthMap_wo_xBD: <region>/images/*.tif, <region>/labels/*.tif, val.txt',
    prepare='farslip ovss-convert openearthmap <official-release-folder> --data-root <data-root>',
    notes="label 0 (unknown) is scored as a ninth class 'background', as in both reference repos",
    presets=dict(segearth=dict(prob_thd=0.1, bg_idx=0)),  # docs/reference/ovss-evaluation.md#18-per-dataset-settings
)
model = dict(class_names='classnames:cls_openearthmap.txt')
test_dataloader = dict(
    batch_size=2,
    dataset=dict(
        type='OpenEarthMapDataset',
        data_root='data/OpenEarthMap',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        img_suffix='.tif',
        seg_map_suffix='.tif',
        reduce_zero_label=False,
    ))
