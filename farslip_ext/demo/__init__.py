"""The embedded end-to-end demo (``farslip demo``, docs/demo.md).

* :mod:`farslip_ext.demo.data` — the embedded dataset (synthetic scenes in the real on-disk formats);
* :mod:`farslip_ext.demo.landsat` — the optional real Landsat-7 scene (fetched, never installed);
* :mod:`farslip_ext.demo.pretrain` — pretraining and export of the shipped small CLIP
  (``tools/pretrain_demo_clip.py``; config ``pretrain_config.py``);
* :mod:`farslip_ext.demo.pipeline` — :func:`~farslip_ext.demo.pipeline.run_demo`: evaluate, stage 1,
  evaluate, stage 2, evaluate, report;
* :mod:`farslip_ext.demo.figures` — the PNG figures.

Nothing is imported here, so ``import farslip_ext.demo`` stays cheap.
"""
