"""Conversation metrics: BLEU-2/3, ROUGE-2/L, Distinct-2/3/4 (paper Sec. 5.1.3 and 5.3.1, Table 3).

What each number is (and how it matches the UniCRS ``src/evaluate_conv.py`` that MSCRS imports)
-----------------------------------------------------------------------------------------------
Tokens are **words**: ``text.split()`` on whitespace, as UniCRS does after decoding the GPT-2 ids
(so punctuation stays glued to its word: ``"you?"`` is one token). Never characters (CRSLab bug #42
iterated over the characters of the string). Pass ``tokenize=`` to change it; the paper-comparable
default is whitespace.

* ``bleu@n`` (n = 1..4; Table 3 uses 2 and 3): ``nltk.translate.bleu_score.sentence_bleu([ref], pred,
  weights)`` with the **one-hot** weight vector (weights[n-1] = 1, others 0) and no smoothing, i.e.
  ``BP * p_n``: the clipped n-gram precision of that single order times the brevity penalty
  ``BP = exp(1 - |ref| / |pred|)`` if ``|pred| < |ref|`` else 1. It is *not* the cumulative BLEU-n
  (geometric mean of orders 1..n). A prediction with no n-gram match scores 0 (nltk returns
  ``sys.float_info.min``-scaled values, ~1e-308). Averaged over responses.
* ``rouge2`` / ``rougeL``: F-measure of the ``rouge-score`` package (its own tokenizer: lower-case,
  non-alphanumerics become spaces; no stemming by default), averaged over responses. UniCRS has no
  ROUGE; MSCRS/DCRS report it without code, so this is the standard ``rouge-score`` reading.
* ``dist@n`` (UniCRS/DCRS convention, the one in Table 3, values can exceed 1): number of distinct
  n-grams over the **whole corpus** of generated responses divided by the number of responses.
* ``dist_ratio@n`` (the usual Li et al. 2016 ratio, 0..1): distinct n-grams / total n-grams, corpus-level.
* ``sacrebleu``: corpus BLEU-4 from ``sacrebleu.corpus_bleu`` (13a tokenisation, 0..100 scale), beside
  the sentence-level numbers for readers used to it; not a Table 3 column.

Denominator: UniCRS divides every sum by ``sent_cnt``, the number of **non-empty** predictions (empty
ones still enter with BLEU 0). ``GenerationEvaluator(denominator="nonempty")`` (default) reproduces
that; ``"all"`` divides by the number of pairs. ``count`` and ``count_nonempty`` are always reported.
"""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Callable, Iterable, Literal, Sequence

import numpy as np
from nltk.translate.bleu_score import sentence_bleu

__all__ = [
    "GenerationEvaluator", "whitespace_tokenize", "ngrams", "sentence_bleu_n", "distinct_counts",
    "clean_generated",
]

Tokenizer = Callable[[str], list[str]]


def whitespace_tokenize(text: str) -> list[str]:
    """UniCRS tokenisation: ``str.split()`` (words, never characters)."""
    return text.split()


def clean_generated(text: str, special_tokens: Sequence[str] = ("<pad>", "<|endoftext|>")) -> str:
    """What UniCRS does to a decoded sequence before scoring: drop the special tokens, strip."""
    for tok in special_tokens:
        text = text.replace(tok, "")
    return text.strip()


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Contiguous word n-grams of a token list (empty when ``len(tokens) < n``)."""
    if isinstance(tokens, str):  # guard against the CRSLab character bug
        raise ValueError("ngrams: expected a list of tokens, got a str (tokenize it first)")
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def sentence_bleu_n(pred_tokens: Sequence[str], ref_tokens: Sequence[str], n: int) -> float:
    """UniCRS BLEU-n of one response: nltk ``sentence_bleu`` with one-hot weights on order ``n``."""
    if not 1 <= n <= 4:
        raise ValueError(f"n: expected 1..4, got {n}")
    weights = [0.0] * 4
    weights[n - 1] = 1.0
    with warnings.catch_warnings():  # nltk warns on every zero-overlap order; expected here
        warnings.simplefilter("ignore")
        return float(sentence_bleu([list(ref_tokens)], list(pred_tokens), weights))


def distinct_counts(token_lists: Iterable[Sequence[str]], n: int) -> tuple[int, int]:
    """(distinct n-grams, total n-grams) over a corpus of tokenised responses."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for toks in token_lists:
        grams = ngrams(toks, n)
        total += len(grams)
        seen.update(grams)
    return len(seen), total


class GenerationEvaluator:
    """Streaming BLEU / ROUGE / Distinct accumulator (module docstring gives the exact definitions).

    ``update(preds, refs)`` adds decoded strings; ``compute()`` returns
    ``bleu@1..4, rouge2, rougeL, dist@2..4, dist_ratio@2..4, sacrebleu, count, count_nonempty``
    (``dist@1`` / ``dist_ratio@1`` too); ``per_sample()`` the per-response BLEU/ROUGE arrays.
    """

    BLEU_ORDERS = (1, 2, 3, 4)
    DIST_ORDERS = (1, 2, 3, 4)

    def __init__(self, tokenize: Tokenizer | None = None, rouge_use_stemmer: bool = False,
                 denominator: Literal["nonempty", "all"] = "nonempty", sacrebleu: bool = True) -> None:
        if denominator not in ("nonempty", "all"):
            raise ValueError(f"denominator: expected 'nonempty' or 'all', got {denominator!r}")
        from rouge_score import rouge_scorer  # imported lazily: heavy-ish and only needed here

        self.tokenize: Tokenizer = tokenize or whitespace_tokenize
        self.denominator = denominator
        self.use_sacrebleu = sacrebleu
        self._rouge = rouge_scorer.RougeScorer(["rouge2", "rougeL"], use_stemmer=rouge_use_stemmer)
        self.reset()

    def reset(self) -> None:
        self._preds: list[str] = []
        self._refs: list[str] = []
        self._bleu: dict[int, list[float]] = {n: [] for n in self.BLEU_ORDERS}
        self._rouge2: list[float] = []
        self._rougeL: list[float] = []
        self._distinct: dict[int, set[tuple[str, ...]]] = {n: set() for n in self.DIST_ORDERS}
        self._total: Counter[int] = Counter()
        self._nonempty = 0

    def update(self, preds: list[str], refs: list[str]) -> None:
        """Add generated responses ``preds`` and their references ``refs`` (same length, strings)."""
        if isinstance(preds, str) or isinstance(refs, str):
            raise ValueError("preds/refs: expected lists of strings, got a single str")
        if len(preds) != len(refs):
            raise ValueError(f"preds/refs: expected equal lengths, got {len(preds)} and {len(refs)}")
        for i, (p, r) in enumerate(zip(preds, refs)):
            if not isinstance(p, str) or not isinstance(r, str):
                raise ValueError(f"preds/refs[{i}]: expected str, got {type(p).__name__}/{type(r).__name__}")
            pt, rt = self.tokenize(p), self.tokenize(r)
            for n in self.BLEU_ORDERS:
                self._bleu[n].append(sentence_bleu_n(pt, rt, n))
            sc = self._rouge.score(r, p)  # rouge-score's signature is (target, prediction)
            self._rouge2.append(sc["rouge2"].fmeasure)
            self._rougeL.append(sc["rougeL"].fmeasure)
            for n in self.DIST_ORDERS:
                grams = ngrams(pt, n)
                self._total[n] += len(grams)
                self._distinct[n].update(grams)
            self._nonempty += int(len(p) > 0)  # UniCRS: len(pred) > 0 on the stripped string
        self._preds.extend(preds)
        self._refs.extend(refs)

    def per_sample(self) -> dict[str, np.ndarray]:
        """Per-response ``bleu@n``, ``rouge2``, ``rougeL`` arrays (for paired significance tests)."""
        out = {f"bleu@{n}": np.asarray(v, dtype=np.float64) for n, v in self._bleu.items()}
        out["rouge2"] = np.asarray(self._rouge2, dtype=np.float64)
        out["rougeL"] = np.asarray(self._rougeL, dtype=np.float64)
        return out

    def compute(self) -> dict[str, float]:
        count = len(self._preds)
        if count == 0:
            raise ValueError("GenerationEvaluator.compute: no responses; call update() first")
        denom = self._nonempty if self.denominator == "nonempty" else count
        out: dict[str, float] = {}
        for key, arr in self.per_sample().items():
            out[key] = float(arr.sum() / denom) if denom else 0.0
        for n in self.DIST_ORDERS:
            d = len(self._distinct[n])
            out[f"dist@{n}"] = d / denom if denom else 0.0
            out[f"dist_ratio@{n}"] = d / self._total[n] if self._total[n] else 0.0
        if self.use_sacrebleu:
            import sacrebleu

            out["sacrebleu"] = float(sacrebleu.corpus_bleu(self._preds, [self._refs]).score)
        out["count"] = float(count)
        out["count_nonempty"] = float(self._nonempty)
        return out
