"""Running one recommendation configuration: train (or score) the model, evaluate, record.

:func:`run_recommendation` trains one model under a :class:`~.config.RecRunConfig` and writes
``<results_dir>/<run name>/result.json`` atomically; a finished run found there with the same
configuration, data, package version and backbone, and not edited since (:mod:`..fingerprint`), is loaded
instead of re-trained (sweeps resume without redoing points), and an interrupted run resumes from its
per-epoch checkpoints (:class:`~mscrs_core.training.trainer.Trainer`).

Protocol: each gold item of a recommender turn is its own sample; scores over the whole item set;
model selection on the validation split only; the test split is scored once at the end.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.files import project_root
from ..fingerprint import reusable_result, run_fingerprint, seal, start_run
from .build import build_recommender, context_bank_for, lm_free_graph_encoder, load_backbone_for, rec_splits, \
    subsample
from .config import RecRunConfig
from .results import atomic_json, default_results_dir


#: The stage trained with the soft-prompt path closed (``close_lm_path``): the graph side, the head, the text path and,
#: with ``title_readout``, the weight of the backbone's title readout (computed once per context, no prompt). Results
#: written before the readout existed call it "warm-up (no LM)" (:data:`LEGACY_WARM_STAGE`).
WARM_STAGE = "warm-up (no soft prompt)"
LEGACY_WARM_STAGE = "warm-up (no LM)"


def _evaluate_scores(scores: torch.Tensor, samples: list, item_pos: dict[int, int],
                     popularity: torch.Tensor | None = None) -> tuple[dict, dict, dict]:
    """Metrics (ties never in the model's favour), per-sample values, and the slices: gold already mentioned in
    the dialog / new item, plus the share of samples whose top-1 item is popularity's top-1."""
    from ...evaluation import RankingEvaluator, gold_was_mentioned, slice_metrics, top1_agreement

    gold = torch.tensor([item_pos[s.target] for s in samples])
    exclude = [[item_pos[e] for e in s.mentioned_items if e in item_pos] for s in samples]
    ev = RankingEvaluator()
    ev.update(scores, gold, exclude=exclude)
    per = ev.per_sample()
    slices: dict = slice_metrics({k: v for k, v in per.items() if not k.startswith("excl/")},
                                 gold_was_mentioned(samples))
    if popularity is not None:
        slices["top1_is_popularity_top1"] = top1_agreement(scores, popularity.expand(len(samples), -1))
    return ev.compute(), {k: np.asarray(v).tolist() for k, v in per.items() if not k.startswith("excl/")}, slices


def run_recommendation(cfg: RecRunConfig, results_dir: str | os.PathLike | None = None,
                       data_root: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None,
                       progress: bool = False) -> dict[str, Any]:
    """Train and evaluate one configuration; see the module docstring. Returns the result record."""
    from ...data import load_dataset

    run_dir = Path(results_dir or default_results_dir()) / cfg.name()
    result_path = run_dir / "result.json"
    res = reusable_result(result_path, cfg, data_root, cache_dir)  # same config, data, version, backbone, content
    if res is not None:
        res["reused"] = True
        return res
    fingerprint = run_fingerprint(cfg, data_root, cache_dir)
    start_run(run_dir, fingerprint)  # checkpoints of other data are not resumed
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else project_root() / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    ds = load_dataset(cfg.dataset, data_root)
    item_pos = ds.item_index()
    train, valid, test = rec_splits(cfg, ds)
    record: dict[str, Any] = {"config": cfg.flat(), "name": cfg.name(),
                              "samples": {"train": len(train), "valid": len(valid), "test": len(test)}}

    from ...baselines import popularity_scores

    pop = popularity_scores(train, ds.item_ids)  # the baseline, a reference, the item-bias init and the slices
    if cfg.model == "popularity":
        valid_scores, test_scores, history = pop.expand(len(valid), -1), pop.expand(len(test), -1), []
    elif cfg.model == "graph_scorer":
        from ...baselines import graph_scores

        encoder = lm_free_graph_encoder(cfg, ds, cache, data_root)
        valid_scores, test_scores = graph_scores(encoder, valid, ds.item_ids), graph_scores(encoder, test, ds.item_ids)
        history = []
        record["graphs"] = {k: v for k, v in encoder.describe().items() if k != "config"}
    elif cfg.model == "copy_context":
        from ...baselines import copy_context_scores

        valid_scores = copy_context_scores(valid, ds.item_ids, pop)
        test_scores, history = copy_context_scores(test, ds.item_ids, pop), []
    elif cfg.model == "zero_shot_text":
        from ...baselines import ZeroShotTextConfig, item_texts_for, zero_shot_text_scores

        valid_scores, test_scores, history = zero_shot_text_scores(
            train, valid, test, ds.item_ids, item_texts_for(ds, data_root, with_title=True),
            ZeroShotTextConfig(max_length=cfg.text_max_length), cache / f"{cfg.dataset}-contexts")
    elif cfg.model == "entity_mean":
        from ...baselines import EntityMeanConfig, train_entity_mean

        encoder = lm_free_graph_encoder(cfg, ds, cache, data_root)
        # the same epoch budget as the MSCRS warm-up, which trains this very scorer inside the prompt model
        valid_scores, test_scores, history = train_entity_mean(
            encoder, train, valid, test, ds.item_ids, EntityMeanConfig(epochs=max(cfg.warm_epochs, 1), seed=cfg.seed))
    elif cfg.model == "text_classifier":
        from ...baselines import train_text_classifier

        valid_scores, test_scores, history = train_text_classifier(train, valid, test, ds.item_ids,
                                                                   cfg.text_classifier_config(),
                                                                   cache / f"{cfg.dataset}-contexts")
    else:
        valid_scores, test_scores, history, extra = _train_prompt_model(cfg, ds, train, valid, test, pop, run_dir,
                                                                        cache, data_root, progress)
        record.update(extra)
    record["valid"], _, record["valid_slices"] = _evaluate_scores(valid_scores, valid, item_pos, pop)
    record["test"], record["test_per_sample"], record["test_slices"] = _evaluate_scores(test_scores, test,
                                                                                        item_pos, pop)
    record["test_sample_ids"] = [f"{s.dialog_id}#{s.turn_index}#{s.target}" for s in test]
    record["history"] = history
    record["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_json(seal(record, fingerprint), result_path)
    record["reused"] = False
    return record


def lm_stage_bar(warm_recall: float, n_valid: int, rule: str = "one_se") -> float:
    """The validation Recall@10 the language-model stage must exceed to be kept (:func:`lm_stage_wins`): the
    warm-up's under ``"best"``, plus one binomial standard error of it under ``"one_se"``."""
    if rule == "best":
        return warm_recall
    if rule != "one_se":
        raise ValueError(f"rule: expected 'one_se' or 'best', got {rule!r}")
    if n_valid < 1:
        raise ValueError(f"n_valid: expected >= 1, got {n_valid}")
    return warm_recall + math.sqrt(max(warm_recall * (1.0 - warm_recall), 0.0) / n_valid)


def lm_stage_wins(warm_recall: float, lm_recall: float, n_valid: int, rule: str = "one_se") -> bool:
    """Does validation keep the language-model stage rather than the warm-up (no soft-prompt pass)?

    ``"best"``: whichever has the higher validation Recall@10 (ties keep the warm-up). ``"one_se"``: the one
    standard error rule (Breiman et al. 1984; Hastie et al., *Elements of Statistical Learning*, 7.10): the larger
    model must beat the smaller one by more than the binomial standard error of the smaller one's recall,
    sqrt(r (1 - r) / n_valid). With a few hundred validation samples, an epoch-by-epoch maximum over the LM stage
    otherwise wins by chance about as often as by merit.
    """
    return lm_recall > lm_stage_bar(warm_recall, n_valid, rule)


def _train_prompt_model(cfg: RecRunConfig, ds, train, valid, test, popularity: torch.Tensor, run_dir: Path,
                        cache: Path, data_root, progress: bool):
    from ...data import pretrain_samples
    from ...graphs.assemble import build_dataset_graphs
    from ...models import RecCollator
    from ...training import train as train_loop

    graphs = build_dataset_graphs(ds, cfg.graphs.settings(cache), data_root)
    path, backbone, tokenizer = load_backbone_for(cfg, ds, cache)
    model = build_recommender(cfg, ds, graphs, backbone, tokenizer)
    if model.config.item_bias:
        model.init_item_bias(popularity)
    encoder = model.graph_encoder
    q = model.prompt_encoder.max_entities
    pre_train = pre_valid = []
    if cfg.pretrain_epochs > 0:
        pre_train = subsample(pretrain_samples(ds.dialogs("train")), cfg.pretrain_max_samples)
        pre_valid = subsample(pretrain_samples(ds.dialogs("valid")), max(cfg.pretrain_max_samples // 5, 1)
                               if cfg.pretrain_max_samples else 0)
    features = None
    if model.config.context_encoder == "text_encoder":  # T_s from the sentence encoder (Sec. 4.3's RoBERTa)
        from ...features.context_text import CONTEXT_CACHE_NAME, ContextTextFeatures

        features = ContextTextFeatures(max_length=cfg.text_max_length)
        if features.dim != model.config.context_text_dim:
            raise ValueError(f"context_text_dim {model.config.context_text_dim} != the text encoder's width "
                             f"{features.dim}")
        # train + valid + test in one file: the text classifier's own feature file (the same samples, in order)
        features.precompute(list(train) + list(valid) + list(test), cache / f"{cfg.dataset}-contexts" /
                            CONTEXT_CACHE_NAME)
        features.precompute(list(pre_train) + list(pre_valid), cache / f"{cfg.dataset}-contexts" /
                            f"pretrain-{cfg.pretrain_max_samples}-{CONTEXT_CACHE_NAME}")
        model.context_features = features
    collator = RecCollator(tokenizer, max_length=cfg.max_length, max_entities=q, context_features=features)
    pre_collator = RecCollator(tokenizer, max_length=cfg.max_length, max_entities=q, include_response=True,
                               context_features=features)
    t_bank = time.perf_counter()
    if cfg.prompt_position == "suffix":
        bank = context_bank_for(model, collator, {"train": train, "valid": valid, "test": test},
                                dataset=cfg.dataset, cache=cache)
        if pre_train:
            bank.merge(context_bank_for(model, pre_collator, {"pretrain-train": pre_train,
                                                              "pretrain-valid": pre_valid},
                                        dataset=cfg.dataset, cache=cache))
        model.attach_context_bank(bank)
    if model.title_readout is not None:  # t(s) of every context once, without gradient (read back by later runs)
        from ...models.title_readout import precompute_readout

        precompute_readout(model.title_readout, collator, list(train) + list(valid) + list(test), dataset=cfg.dataset,
                           cache=cache, bank=model.context_bank)
    bank_seconds = round(time.perf_counter() - t_bank, 1)
    history: list[dict] = []

    def stage(name: str):
        return cfg.training.stage(name, run_dir / name, seed=cfg.seed, max_length=cfg.max_length, progress=progress)

    if cfg.pretrain_epochs > 0:
        res = train_loop(model, pre_train, pre_valid, stage("pretrain"), collator=pre_collator)
        history += [{"stage": "pretrain", **h} for h in res.history]
    warm = None
    if cfg.warm_epochs > 0 and model.config.entity_skip:
        # the graph side, scale and bias first, without the language model (no backbone pass: cheap)
        model.close_lm_path()
        warm = train_loop(model, train, valid, stage("warm"), collator=collator)
        model.close_lm_path(False)
        history += [{"stage": WARM_STAGE, **h} for h in warm.history]
    selected, lm_best = "rec", None
    if cfg.rec_epochs > 0:
        # after a warm-up the graph side, head and biases are trained: the LM stage learns what the language
        # model adds on top of them (lm_trains="prompt") instead of re-fitting them beside a new, noisy term
        frozen = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(
            model.LM_PATH_PREFIXES)] if warm is not None and cfg.lm_trains == "prompt" else []
        for p in frozen:
            p.requires_grad_(False)
        try:
            res = train_loop(model, train, valid, stage("rec"), collator=collator)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        history += [{"stage": "rec", **h} for h in res.history]
        lm_best = res.best_metric
    if warm is not None and (cfg.rec_epochs == 0 or not lm_stage_wins(warm.best_metric, res.best_metric, len(valid),
                                                                         cfg.select_rule)):
        # validation prefers the warm-up's weights: keep them, the language model stays out (stated in the result)
        from ...training.checkpoint import load_checkpoint

        model.load_trainable_state_dict(load_checkpoint(warm.best_path)["model"])
        model.close_lm_path()
        res, selected = warm, WARM_STAGE
    model.eval()
    scores = []
    with torch.no_grad():
        for split, known in ((valid, res.best_valid_scores), (test, None)):
            if known is not None:  # the loop scored the validation split with these weights already
                scores.append(known)
                continue
            out = []
            for i in range(0, len(split), 128):
                out.append(model.score_items(collator(split[i:i + 128])).float())
            scores.append(torch.cat(out))
    extra = {"graphs": {k: v for k, v in encoder.describe().items() if k != "config"},
             "graph_summary": graphs.summary(), "backbone": str(path), "best_rec_epoch": res.best_epoch,
             "selected_stage": selected,
             "stage_valid_recall@10": {WARM_STAGE: None if warm is None else warm.best_metric,
                                       "rec": None if cfg.rec_epochs == 0 else lm_best},
             "select_rule": cfg.select_rule,
             "context_state_seconds": bank_seconds,
             "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    return scores[0], scores[1], history, extra
