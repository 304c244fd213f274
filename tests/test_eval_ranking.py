"""RankingEvaluator against hand-computed ranks (UniCRS/MSCRS protocol)."""
import math

import numpy as np
import pytest
import torch

from mscrs_core.evaluation import RankingEvaluator, gold_ties, metrics_from_ranks, metrics_from_ties, rank_of_gold

# 6 items; row 0: gold 2 (0.5) has 0.9 and 0.7 above it -> rank 3; row 1: gold 1 (0.9) -> rank 1
SCORES = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7, 0.2],
                       [0.1, 0.9, 0.5, 0.3, 0.7, 0.2]])
GOLD = torch.tensor([2, 1])
KS = dict(ks_recall=(1, 2, 3), ks_ndcg=(2, 3), ks_mrr=(2, 3))


def test_hand_computed_metrics():
    ev = RankingEvaluator(**KS)
    ev.update(SCORES, GOLD)
    per = ev.per_sample()
    assert per["rank"].tolist() == [3.0, 1.0]
    assert per["recall@1"].tolist() == [0.0, 1.0]
    assert per["recall@2"].tolist() == [0.0, 1.0]
    assert per["recall@3"].tolist() == [1.0, 1.0]
    assert per["ndcg@2"].tolist() == [0.0, 1.0]
    assert per["ndcg@3"] == pytest.approx([0.5, 1.0])  # 1/log2(3+1) = 0.5
    assert per["mrr@3"] == pytest.approx([1 / 3, 1.0])
    out = ev.compute()
    assert out["count"] == 2
    assert out["recall@1"] == pytest.approx(0.5)
    assert out["ndcg@3"] == pytest.approx(0.75)
    assert out["mrr@3"] == pytest.approx((1 / 3 + 1) / 2)
    assert out["mrr@2"] == pytest.approx(0.5)
    assert not any(k.startswith("excl/") for k in out)


def test_default_keys_match_table2():
    ev = RankingEvaluator()
    ev.update(torch.randn(4, 100), torch.tensor([0, 1, 2, 3]))
    assert set(ev.compute()) == {"recall@1", "recall@10", "recall@50", "ndcg@10", "ndcg@50",
                                 "mrr@10", "mrr@50", "count"}


def test_ndcg_rank_two_and_streaming_over_batches():
    # gold at rank 2 -> ndcg = 1/log2(3); two updates accumulate like one
    s = torch.tensor([[3.0, 2.0, 1.0]])
    ev = RankingEvaluator(ks_recall=(1,), ks_ndcg=(2,), ks_mrr=(2,))
    ev.update(s, torch.tensor([1]))
    ev.update(s, torch.tensor([2]))
    out = ev.compute()
    assert out["ndcg@2"] == pytest.approx((1 / math.log2(3) + 0) / 2)
    assert out["mrr@2"] == pytest.approx(0.25)
    assert out["count"] == 2


def test_ties_optimistic_and_pessimistic():
    s = torch.tensor([[0.5, 0.5, 0.5, 0.1]])
    assert rank_of_gold(s, torch.tensor([1]), "optimistic").item() == 1
    assert rank_of_gold(s, torch.tensor([1]), "pessimistic").item() == 3
    ev = RankingEvaluator(ks_recall=(1,), ks_ndcg=(1,), ks_mrr=(1,), tie_break="pessimistic")
    ev.update(s, torch.tensor([1]))
    assert ev.compute()["recall@1"] == 0.0


def test_topk_mode_matches_without_ties_and_inf_beyond_max_k():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(8, 200, generator=g)  # continuous -> no ties
    gold = torch.randint(0, 200, (8,), generator=g)
    opt = rank_of_gold(s, gold, "optimistic")
    top = rank_of_gold(s, gold, "topk", max_k=50)
    for o, t in zip(opt.tolist(), top.tolist()):
        assert (t == o) if o <= 50 else math.isinf(t)
    m = metrics_from_ranks(torch.tensor([math.inf]), ks_recall=(50,), ks_ndcg=(50,), ks_mrr=(50,))
    assert m["recall@50"][0] == 0 and m["ndcg@50"][0] == 0 and m["mrr@50"][0] == 0


def _unicrs_style_reference(scores, gold, k_list=(1, 10, 50)):
    """Independent reference written from the UniCRS description: list-based top-50 ranking."""
    out = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg", "mrr") for k in k_list}
    for row, label in zip(scores.tolist(), gold.tolist()):
        order = sorted(range(len(row)), key=lambda i: -row[i])[:50]
        for k in k_list:
            if label in order[:k]:
                r0 = order.index(label)
                out[f"recall@{k}"] += 1
                out[f"mrr@{k}"] += 1 / (r0 + 1)
                out[f"ndcg@{k}"] += 1 / math.log2(r0 + 2)
    return {k: v / len(gold) for k, v in out.items()}


def test_agrees_with_unicrs_style_reference_on_random_scores():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(64, 120, generator=g)
    gold = torch.randint(0, 120, (64,), generator=g)
    # plant some golds near the top so every k has hits
    s[:16, :] -= 10
    s[torch.arange(16), gold[:16]] += 10 + torch.rand(16, generator=g) * 3
    ev = RankingEvaluator(ks_recall=(1, 10, 50), ks_ndcg=(1, 10, 50), ks_mrr=(1, 10, 50))
    ev.update(s[:30], gold[:30])
    ev.update(s[30:], gold[30:])
    ref = _unicrs_style_reference(s, gold)
    out = ev.compute()
    assert out["recall@1"] > 0
    for k, v in ref.items():
        assert out[k] == pytest.approx(v), k


def test_exclude_reported_beside_standard_and_keeps_gold():
    ev = RankingEvaluator(**KS)
    # row 0 excludes item 1 (0.9) and the gold itself (2): gold stays, rank 3 -> 2
    ev.update(SCORES, GOLD, exclude=[[1, 2], []])
    out = ev.compute()
    assert out["mrr@3"] == pytest.approx((1 / 3 + 1) / 2)  # standard protocol unchanged
    assert out["excl/mrr@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert ev.per_sample()["excl/rank"].tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match="exclude"):
        ev.update(SCORES, GOLD)  # mixing modes would misalign the excl/ samples


def test_multi_gold_turn_gives_one_sample_per_gold():
    ev = RankingEvaluator(**KS)
    ev.update_multi_gold(SCORES[:1], [[2, 1]], exclude=[[4]])
    per = ev.per_sample()
    assert per["rank"].tolist() == [3.0, 1.0]
    assert per["excl/rank"].tolist() == [2.0, 1.0]
    assert ev.compute()["count"] == 2


def test_bad_inputs_raise_clear_errors():
    ev = RankingEvaluator()
    with pytest.raises(ValueError, match="gold"):
        ev.update(SCORES, torch.tensor([2, 6]))
    with pytest.raises(ValueError, match="gold"):
        ev.update(SCORES, torch.tensor([2]))
    with pytest.raises(ValueError, match="scores"):
        ev.update(torch.zeros(6), torch.tensor([1]))
    with pytest.raises(ValueError, match="NaN"):
        ev.update(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="exclude"):
        RankingEvaluator().update(SCORES, GOLD, exclude=[[7], []])
    with pytest.raises(ValueError, match="no samples"):
        RankingEvaluator().compute()
    with pytest.raises(ValueError, match="tie_break"):
        RankingEvaluator(tie_break="random")


def test_random_scores_recall_near_k_over_n():
    # sanity of the scale: with random scores Recall@10 over 100 items is ~0.1
    g = torch.Generator().manual_seed(2)
    ev = RankingEvaluator()
    ev.update(torch.rand(4000, 100, generator=g), torch.randint(0, 100, (4000,), generator=g))
    out = ev.compute()
    assert abs(out["recall@10"] - 0.10) < 0.02
    assert abs(out["recall@50"] - 0.50) < 0.03
    assert np.isfinite(list(out.values())).all()


# --- tie_break="expected" (the default): exact expectation over a random order of the gold's ties ---

def test_expected_is_default_and_all_equal_row_gives_k_over_n():
    n = 20
    ev = RankingEvaluator(ks_recall=(1, 5, 10, 50), ks_ndcg=(5,), ks_mrr=(5,))
    assert ev.tie_break == "expected"
    ev.update(torch.zeros(3, n), torch.tensor([0, 7, 19]))
    out = ev.compute()
    assert out["recall@1"] == pytest.approx(1 / n)
    assert out["recall@5"] == pytest.approx(5 / n)
    assert out["recall@10"] == pytest.approx(10 / n)
    assert out["recall@50"] == pytest.approx(1.0)
    assert out["mrr@5"] == pytest.approx(sum(1 / r for r in range(1, 6)) / n)
    assert out["ndcg@5"] == pytest.approx(sum(1 / math.log2(r + 1) for r in range(1, 6)) / n)
    assert ev.per_sample()["rank"] == pytest.approx([(n + 1) / 2] * 3)
    assert rank_of_gold(torch.zeros(1, n), torch.tensor([3])).item() == pytest.approx((n + 1) / 2)
    assert rank_of_gold(torch.zeros(1, n), torch.tensor([3]), "optimistic").item() == 1


def test_expected_hand_computed_partial_tie():
    # gold 1 (0.5): one item above (0.9), three tied (incl. gold) -> rank uniform on {2, 3, 4}
    s = torch.tensor([[0.9, 0.5, 0.5, 0.5, 0.1]])
    ev = RankingEvaluator(ks_recall=(1, 2, 3, 4), ks_ndcg=(3,), ks_mrr=(3,))
    ev.update(s, torch.tensor([1]))
    per = ev.per_sample()
    assert per["rank"].tolist() == [3.0]
    assert [per[f"recall@{k}"][0] for k in (1, 2, 3, 4)] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert per["mrr@3"][0] == pytest.approx((1 / 2 + 1 / 3) / 3)
    assert per["ndcg@3"][0] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 3)


def test_expected_without_ties_agrees_with_every_mode():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(32, 80, generator=g)
    gold = torch.randint(0, 80, (32,), generator=g)
    outs = {}
    for mode in ("expected", "optimistic", "pessimistic", "topk"):
        ev = RankingEvaluator(tie_break=mode)
        ev.update(s, gold, exclude=[[0, 1]] * 32)
        outs[mode] = ev.per_sample()
    for mode in ("optimistic", "pessimistic", "topk"):
        for k, v in outs["expected"].items():
            if k.endswith("rank") and mode == "topk":
                continue  # topk stores inf beyond max_k
            assert outs[mode][k] == pytest.approx(v), (mode, k)


def test_expected_matches_brute_force_random_permutations():
    # integer scores with many ties; average the exact metrics over random orders of the items
    g = torch.Generator().manual_seed(4)
    s = torch.randint(0, 4, (6, 30), generator=g).float()
    gold = torch.randint(0, 30, (6,), generator=g)
    ks = dict(ks_recall=(1, 5, 10), ks_ndcg=(5, 10), ks_mrr=(5, 10))
    ev = RankingEvaluator(**ks)
    ev.update(s, gold)
    per = ev.per_sample()
    n_perm = 4000
    acc = {k: np.zeros(6) for k in per if k != "rank"}
    mean_rank = np.zeros(6)
    for _ in range(n_perm):
        perm = torch.randperm(30, generator=g)
        # stable sort by score descending after a random shuffle = random order among ties
        order = perm[torch.sort(-s[:, perm], dim=1, stable=True).indices]
        rank = (order == gold[:, None]).float().argmax(dim=1) + 1
        for k, v in metrics_from_ranks(rank, **ks).items():
            acc[k] += v
        mean_rank += rank.numpy()
    for k, v in acc.items():
        assert per[k] == pytest.approx(v / n_perm, abs=0.03), k
    assert per["rank"] == pytest.approx(mean_rank / n_perm, abs=0.5)


def test_expected_lies_between_pessimistic_and_optimistic():
    g = torch.Generator().manual_seed(5)
    s = torch.randint(0, 3, (50, 40), generator=g).float()
    gold = torch.randint(0, 40, (50,), generator=g)
    per = {}
    for mode in ("expected", "optimistic", "pessimistic"):
        ev = RankingEvaluator(ks_recall=(1, 10, 20), ks_ndcg=(10, 20), ks_mrr=(10, 20), tie_break=mode)
        ev.update(s, gold)
        per[mode] = ev.per_sample()
    for k in per["expected"]:
        if k == "rank":
            assert (per["optimistic"][k] <= per["expected"][k]).all()
            assert (per["expected"][k] <= per["pessimistic"][k]).all()
            continue
        assert (per["expected"][k] <= per["optimistic"][k] + 1e-12).all(), k
        assert (per["expected"][k] >= per["pessimistic"][k] - 1e-12).all(), k
    assert per["expected"]["recall@10"].mean() < per["optimistic"]["recall@10"].mean()


def test_expected_with_exclusion_and_metrics_from_ties():
    # all-equal row: excluding 2 of the 6 items leaves the gold tied with 4 -> Recall@1 = 1/4
    ev = RankingEvaluator(ks_recall=(1,), ks_ndcg=(1,), ks_mrr=(1,))
    ev.update(torch.zeros(1, 6), torch.tensor([0]), exclude=[[4, 5]])
    out = ev.compute()
    assert out["recall@1"] == pytest.approx(1 / 6)
    assert out["excl/recall@1"] == pytest.approx(1 / 4)
    m = metrics_from_ties(np.array([0.0, 2.0]), np.array([1.0, 1.0]), ks_recall=(2,), ks_ndcg=(3,), ks_mrr=(3,))
    ref = metrics_from_ranks(np.array([1.0, 3.0]), ks_recall=(2,), ks_ndcg=(3,), ks_mrr=(3,))
    for k in ref:
        assert m[k].tolist() == ref[k].tolist()
    h, t = gold_ties(torch.tensor([[1.0, 2.0, 1.0, 1.0]]), torch.tensor([0]))
    assert h.tolist() == [1.0] and t.tolist() == [3.0]
    with pytest.raises(ValueError, match="ties"):
        metrics_from_ties(np.array([0.0]), np.array([0.0]))
