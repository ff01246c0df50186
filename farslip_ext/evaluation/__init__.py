"""Zero-shot scene classification and image-text retrieval on the SkyScript benchmark layouts
(docs/reference/method.md §3.5, §4.6; docs/reference/paper-results.md §1.3-1.4), prompt-template sets, and reports
beside the paper's numbers. See docs/evaluation.md.

Importing this package registers the template sets (``TEMPLATES``) and the CSV datasets (``DATASETS``).
"""
from __future__ import annotations

from farslip_ext.evaluation.templates import (
    DEFAULT_TEMPLATES,
    TEMPLATE_ALIASES,
    FarSLIPSatelliteTemplates,
    OpenAIImageNetTemplates,
    PromptTemplates,
    SkyScriptTemplates,
    build_templates,
)
from farslip_ext.evaluation.csv_datasets import (
    CLASSIFICATION_BENCHMARKS,
    PUBLISHED_CLASSIFICATION,
    PUBLISHED_RETRIEVAL,
    RETRIEVAL_BENCHMARKS,
    BenchmarkDataError,
    ImageTextRetrievalCsv,
    SceneClassificationCsv,
    classification_benchmark,
    load_classnames,
    retrieval_benchmark,
)
from farslip_ext.evaluation.zeroshot import (
    build_classifier,
    class_ranks,
    classification_metrics,
    mean_over_datasets,
    run_zeroshot_benchmarks,
    zeroshot_classification,
)
from farslip_ext.evaluation.retrieval import (
    first_match_ranks,
    recall_at_k,
    retrieval_metrics,
    run_retrieval_benchmarks,
    zeroshot_retrieval,
)
from farslip_ext.evaluation.report import (
    Deviation,
    clip_benchmark_record,
    compare_to_published,
    infer_published_row,
    published_numbers,
    retrieval_markdown,
    retrieval_percent,
    write_records,
    zeroshot_markdown,
    zeroshot_percent,
)

__all__ = [
    "DEFAULT_TEMPLATES", "TEMPLATE_ALIASES", "PromptTemplates", "FarSLIPSatelliteTemplates", "SkyScriptTemplates",
    "OpenAIImageNetTemplates", "build_templates",
    "CLASSIFICATION_BENCHMARKS", "RETRIEVAL_BENCHMARKS", "PUBLISHED_CLASSIFICATION", "PUBLISHED_RETRIEVAL",
    "BenchmarkDataError", "SceneClassificationCsv", "ImageTextRetrievalCsv", "classification_benchmark",
    "retrieval_benchmark", "load_classnames",
    "class_ranks", "classification_metrics", "build_classifier", "zeroshot_classification", "run_zeroshot_benchmarks",
    "mean_over_datasets",
    "first_match_ranks", "recall_at_k", "retrieval_metrics", "zeroshot_retrieval", "run_retrieval_benchmarks",
    "clip_benchmark_record", "write_records", "infer_published_row", "published_numbers", "zeroshot_percent",
    "retrieval_percent", "zeroshot_markdown", "retrieval_markdown", "Deviation", "compare_to_published",
]
