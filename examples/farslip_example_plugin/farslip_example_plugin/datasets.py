"""COCO-style detection JSON as stage-2 data, one ``TRAIN_DATASETS`` class.

``annotations.json``: ``images`` (``id``, ``file_name``, ``width``, ``height``, optional ``caption``),
``annotations`` (``image_id``, ``category_id``, ``bbox`` = ``[x, y, w, h]`` pixels, optional ``iscrowd``),
``categories`` (``id``, ``name``). Each item is a stage-2 sample of the batch contract
(farslip_ext.data.batch): the image, its caption (or "a satellite image of a, b and c" from its
categories) and up to ``max_boxes`` object crops with the prompt "a satellite image of {category}".
"""
import json
from pathlib import Path

from farslip_ext.data import RegionCropper, SkippingDataset, SkipSample, Stage2TrainTransform, load_image
from farslip_ext.registry import TRAIN_DATASETS


@TRAIN_DATASETS.register_module()
class CocoDetectionDataset(SkippingDataset):
    STAT_KEYS = SkippingDataset.STAT_KEYS + ("skipped_no_annotations", "dropped_boxes_malformed")

    def __init__(self, ann_file, image_root=None, max_boxes=4, min_size=64, max_size=1024, image_size=224,
                 tokenizer=None, max_skip=100):
        super().__init__(max_skip=max_skip, tokenizer=tokenizer)
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root) if image_root else self.ann_file.parent / "images"
        data = json.loads(self.ann_file.read_text(encoding="utf-8"))
        self.names = {c["id"]: c["name"] for c in data["categories"]}
        self.images = list(data["images"])
        self.anns = {}
        for a in data["annotations"]:
            self.anns.setdefault(a["image_id"], []).append(a)
        self.transform = Stage2TrainTransform(image_size)
        self.cropper = RegionCropper(max_boxes=max_boxes, min_size=min_size, max_size=max_size,
                                     image_size=image_size, tokenizer=self.tokenizer)

    def __len__(self):
        return len(self.images)

    def item_name(self, idx):
        return self.images[idx]["file_name"]

    def load(self, idx):
        info = self.images[idx]
        anns = [a for a in self.anns.get(info["id"], []) if not a.get("iscrowd")]
        if not anns:
            raise SkipSample("skipped_no_annotations", "image has no (non-crowd) annotation")
        img = load_image(self.image_root / info["file_name"])
        regions = []
        for a in anns:
            x, y, w, h = (float(v) for v in a["bbox"])
            if w <= 0 or h <= 0 or a["category_id"] not in self.names:
                self.count("dropped_boxes_malformed")
                continue
            regions.append({"box": (x, y, x + w, y + h), "category": self.names[a["category_id"]],
                            "category_id": int(a["category_id"])})
        cats = sorted({r["category"] for r in regions})
        caption = info.get("caption") or "a satellite image of " + ", ".join(cats)
        sample = {"global_image": self.transform(img), "global_text": self.tokenize(caption)}
        sample.update(self.cropper(img, regions))
        return sample

    @property
    def stats(self):
        return {**self._stats, **self.cropper.stats}
