"""GenerationEvaluator against hand-computed BLEU / ROUGE / Distinct values."""
import math
import random
from collections import Counter

import pytest

from mscrs_core.evaluation import (
    GenerationEvaluator,
    clean_generated,
    distinct_counts,
    ngrams,
    sentence_bleu_n,
    whitespace_tokenize,
)

PRED = "the cat sat on the mat"
REF = "the cat is on the mat"


def test_bleu_single_order_hand_computed():
    p, r = PRED.split(), REF.split()
    # clipped precisions: 1-gram 5/6, 2-gram 3/5, 3-gram 1/4 (only "on the mat"), 4-gram 0; BP = 1
    assert sentence_bleu_n(p, r, 1) == pytest.approx(5 / 6)
    assert sentence_bleu_n(p, r, 2) == pytest.approx(0.6)
    assert sentence_bleu_n(p, r, 3) == pytest.approx(0.25)
    assert sentence_bleu_n(p, r, 4) == pytest.approx(0.0, abs=1e-300)


def test_bleu_brevity_penalty():
    # |pred| = 2 < |ref| = 6 -> BP = exp(1 - 6/2) = e^-2; both precisions are 1
    assert sentence_bleu_n(["the", "cat"], REF.split(), 2) == pytest.approx(math.exp(-2))
    assert sentence_bleu_n([], REF.split(), 2) == 0.0


def _direct_bleu_n(pred, ref, n):
    pc, rc = Counter(ngrams(pred, n)), Counter(ngrams(ref, n))
    total = max(1, sum(pc.values()))
    match = sum(min(c, rc[g]) for g, c in pc.items())
    if len(pred) == 0 or match == 0:
        return 0.0
    bp = 1.0 if len(pred) >= len(ref) else math.exp(1 - len(ref) / len(pred))
    return bp * match / total


def test_bleu_equals_direct_formula_on_random_sentences():
    rng = random.Random(0)
    vocab = ["a", "b", "c", "d"]
    for _ in range(200):
        pred = [rng.choice(vocab) for _ in range(rng.randint(1, 9))]
        ref = [rng.choice(vocab) for _ in range(rng.randint(1, 9))]
        for n in (2, 3):
            assert sentence_bleu_n(pred, ref, n) == pytest.approx(_direct_bleu_n(pred, ref, n), abs=1e-12)


def test_evaluator_hand_computed_corpus():
    ev = GenerationEvaluator()
    ev.update([PRED], [REF])
    ev.update(["the cat"], ["the cat sat on the mat"])
    out = ev.compute()
    assert out["count"] == 2 and out["count_nonempty"] == 2
    assert out["bleu@2"] == pytest.approx((0.6 + math.exp(-2)) / 2)
    assert out["bleu@3"] == pytest.approx((0.25 + 0.0) / 2)  # "the cat" has no trigram
    # ROUGE-2 F: 3/5 and (P=1, R=1/5) -> 1/3; ROUGE-L F: LCS 5 -> 5/6 and (P=1, R=1/3) -> 1/2
    assert out["rouge2"] == pytest.approx((0.6 + 1 / 3) / 2)
    assert out["rougeL"] == pytest.approx((5 / 6 + 0.5) / 2)
    # distinct over both responses: 1-grams {the,cat,sat,on,mat}=5 of 8; 2-grams 5 of 6
    # ("the cat" repeats); 3-grams 4 of 4; 4-grams 3 of 3
    assert out["dist@1"] == pytest.approx(5 / 2)
    assert out["dist@2"] == pytest.approx(5 / 2)
    assert out["dist@3"] == pytest.approx(4 / 2)
    assert out["dist@4"] == pytest.approx(3 / 2)
    assert out["dist_ratio@1"] == pytest.approx(5 / 8)
    assert out["dist_ratio@2"] == pytest.approx(5 / 6)
    assert out["dist_ratio@3"] == pytest.approx(1.0)
    per = ev.per_sample()
    assert per["bleu@2"].tolist() == pytest.approx([0.6, math.exp(-2)])


def test_distinct_counts_words_not_characters():
    # CRSLab bug #42 iterated characters: "hello world" would give 10 character bigrams
    ev = GenerationEvaluator(sacrebleu=False)
    ev.update(["hello world"], ["hello world"])
    out = ev.compute()
    assert out["dist@1"] == 2.0
    assert out["dist@2"] == 1.0
    assert out["dist@3"] == 0.0
    assert distinct_counts([["hello", "world"], ["hello", "there"]], 1) == (3, 4)
    with pytest.raises(ValueError, match="str"):
        ngrams("hello", 2)


def test_whitespace_tokens_keep_punctuation_like_unicrs():
    assert whitespace_tokenize("  hi,  how are you? ") == ["hi,", "how", "are", "you?"]
    assert clean_generated("Hello <movie> there<|endoftext|><pad><pad> ") == "Hello <movie> there"


def test_denominator_nonempty_like_unicrs_and_all():
    preds, refs = [PRED, ""], [REF, "hello there"]
    a = GenerationEvaluator(sacrebleu=False)
    a.update(preds, refs)
    b = GenerationEvaluator(sacrebleu=False, denominator="all")
    b.update(preds, refs)
    oa, ob = a.compute(), b.compute()
    assert oa["count"] == 2 and oa["count_nonempty"] == 1
    assert oa["bleu@2"] == pytest.approx(0.6)  # UniCRS: sum / number of non-empty predictions
    assert ob["bleu@2"] == pytest.approx(0.3)
    assert oa["dist@2"] == pytest.approx(5.0) and ob["dist@2"] == pytest.approx(2.5)


def test_sacrebleu_corpus_bleu_beside():
    ev = GenerationEvaluator()
    ev.update(["the cat sat on the mat today"], ["the cat sat on the mat today"])
    assert ev.compute()["sacrebleu"] == pytest.approx(100.0)


def test_bad_inputs():
    ev = GenerationEvaluator()
    with pytest.raises(ValueError, match="lengths"):
        ev.update(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="single str"):
        ev.update("a b", "a b")
    with pytest.raises(ValueError, match="no responses"):
        ev.compute()
    with pytest.raises(ValueError, match="n"):
        sentence_bleu_n(["a"], ["a"], 5)
