"""Evaluation metrics of MSCRS (Tables 2 and 3) under the UniCRS/MSCRS protocol, significance tests, and
slices (repeated vs new gold items, agreement with popularity)."""
from mscrs_core.evaluation.generation import (
    GenerationEvaluator,
    clean_generated,
    distinct_counts,
    ngrams,
    sentence_bleu_n,
    whitespace_tokenize,
)
from mscrs_core.evaluation.ranking import (
    RankingEvaluator,
    gold_ties,
    metrics_from_ranks,
    metrics_from_ties,
    rank_of_gold,
)
from mscrs_core.evaluation.significance import (
    BootstrapResult,
    PairedTestResult,
    aggregate_seeds,
    aggregate_seeds_frame,
    holm_bonferroni,
    paired_bootstrap,
    paired_test,
)
from mscrs_core.evaluation.slices import gold_was_mentioned, slice_metrics, top1_agreement

__all__ = [
    "RankingEvaluator", "rank_of_gold", "gold_ties", "metrics_from_ranks", "metrics_from_ties",
    "slice_metrics", "gold_was_mentioned", "top1_agreement",
    "GenerationEvaluator", "whitespace_tokenize", "ngrams", "sentence_bleu_n", "distinct_counts",
    "clean_generated",
    "PairedTestResult", "BootstrapResult", "paired_test", "paired_bootstrap", "holm_bonferroni",
    "aggregate_seeds", "aggregate_seeds_frame",
]
