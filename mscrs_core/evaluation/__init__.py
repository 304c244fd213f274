"""Evaluation metrics of MSCRS (Tables 2 and 3) under the UniCRS/MSCRS protocol, and significance tests."""
from mscrs_core.evaluation.generation import (
    GenerationEvaluator,
    clean_generated,
    distinct_counts,
    ngrams,
    sentence_bleu_n,
    whitespace_tokenize,
)
from mscrs_core.evaluation.ranking import RankingEvaluator, metrics_from_ranks, rank_of_gold
from mscrs_core.evaluation.significance import (
    BootstrapResult,
    PairedTestResult,
    aggregate_seeds,
    aggregate_seeds_frame,
    holm_bonferroni,
    paired_bootstrap,
    paired_test,
)

__all__ = [
    "RankingEvaluator", "rank_of_gold", "metrics_from_ranks",
    "GenerationEvaluator", "whitespace_tokenize", "ngrams", "sentence_bleu_n", "distinct_counts",
    "clean_generated",
    "PairedTestResult", "BootstrapResult", "paired_test", "paired_bootstrap", "holm_bonferroni",
    "aggregate_seeds", "aggregate_seeds_frame",
]
