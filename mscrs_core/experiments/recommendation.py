"""One recommendation run (Table 2, Figures 4a-b and 5): configure, train, evaluate, record.

:func:`run_recommendation` trains one model under a :class:`RecRunConfig` and writes
``<results_dir>/<run name>/result.json`` atomically; a finished run found there with the same
configuration, data, package version and backbone, and not edited since (:mod:`.fingerprint`), is loaded
instead of re-trained (sweeps resume without redoing points), and an interrupted run resumes from its
per-epoch checkpoints (``mscrs_core.training.loop``).

Models (``RecRunConfig.model``):

* ``"mscrs"``: the semantic graph encoder (KG + collaborative + text [+ image] graphs, Eq. 1-16),
  the prompt encoder (Eq. 17-19) and the frozen backbone; pre-training by entity prediction
  (Eq. 21-22), then recommendation training (Eq. 23-24).
* ``"unicrs"``: the same model with every semantic graph switched off (knowledge-graph prompt only),
  i.e. UniCRS inside this harness (also MSCRS "w/o -r").
* ``"popularity"`` and ``"text_classifier"``: the baselines of ``mscrs_core.baselines``.
* ``"graph_scorer"``: no training and no language model; the untrained semantic graph encoder of the
  ``"mscrs"`` configuration (same graph switches, same seed) scoring items by cosine similarity to the mean
  context entity (``mscrs_core.baselines.graph_scorer``): what the graphs know by themselves.
* References beyond the paper, which keep Table 2 honest (``mscrs_core.baselines``): ``"copy_context"`` (the
  items already mentioned in the dialog, most recent first, then popularity), ``"zero_shot_text"`` (text-encoder
  similarity of context and item text plus a popularity prior weighted on validation) and ``"entity_mean"``
  (a trained KBRD-like scorer: the mean of the context's entity rows of the same graph encoder as ``"mscrs"``
  (``use_*`` switch the graphs), cosine head with item bias, no language model).

Protocol: each gold item of a recommender turn is its own sample; scores over the whole item set;
model selection on the validation split only; the test split is scored once at the end.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_text
from ..data.files import project_root
from ..models.backbone import OFFLINE_SHORTCUTS
from .fingerprint import read_result, reusable_result, run_fingerprint, seal, start_run
from .run_config import RunConfig

MODELS = ("mscrs", "unicrs", "popularity", "text_classifier", "graph_scorer", "copy_context", "zero_shot_text",
          "entity_mean")


@dataclass(frozen=True)
class RecRunConfig(RunConfig):
    dataset: str = "inspired"
    model: str = "mscrs"
    seed: int = 0
    # semantic graphs (section 4.2)
    k: int = 10
    lambda_: float = 0.5
    use_collab: bool = True
    use_text: bool = True
    use_image: bool = True
    graph_variant: str = "paper"  # "paper" | "authors_code"
    comention_threshold: int = 1
    entity_dim: int = 64  # the R-GCN over all entities runs every step: 64 keeps a CPU step affordable
    # backbone and prompt (section 4.3)
    backbone: str = "smollm2-135m"  # or "tiny-dialogpt", a Hugging Face name/path, "microsoft/DialoGPT-small"
    backbone_epochs: float = 2.0  # pre-training epochs of the tiny DialoGPT (only for backbone="tiny-dialogpt")
    backbone_dtype: str = "bfloat16"  # "float32" | "bfloat16" (the frozen backbone only; prompt and graphs fp32)
    attn_implementation: str = "eager"  # on CPU eager attention's backward beats the fused kernel's at these sizes
    n_task_prompt: int = 10
    n_entity_prompt: int = 4
    fuse_weight: float = 0.1
    fuse_variant: str = "paper"
    rec_scope: str = "items"  # "items" (Eq. 23) | "all_entities" (UniCRS / authors' code)
    prompt_position: str = "suffix"  # "prefix" (Eq. 19) | "suffix" (context states cached)
    head: str = "cosine"  # "dot" (Eq. 23) | "cosine" (learned scale)
    item_bias: bool = True
    entity_skip: bool = True
    zero_init_projection: bool = True
    lm_scale: float = 0.1  # weight of the LM term beside the entity skip path (RecommenderConfig)
    mention_bias: bool = True  # a learned bonus for items already mentioned (RecommenderConfig)
    lm_trains: str = "prompt"  # after a warm-up: "prompt" (prompt encoder + projection only) | "all"
    select_rule: str = "one_se"  # warm-up vs LM stage: "one_se" (the LM must win by a standard error) | "best"
    max_length: int = 64  # context tokens (the newest); UniCRS uses 200, the CPU budget 64
    # training
    pretrain_epochs: int = 1
    pretrain_max_samples: int = 1000  # 0: all pre-training samples
    warm_epochs: int = 5  # Eq. (24) with the language-model path closed first (RecommenderConfig, close_lm_path)
    warm_lr: float = 1e-2  # the warm-up's rate (head, prompt); its graph and entity-table rate: warm_graph_lr
    warm_graph_lr: float = 1e-3
    rec_epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    graph_lr: float = 1e-3  # the graph encoder's rate (R-GCN, LightGCN); see training.loop._optimizer
    entity_lr: float = 1e-5  # the entity table's own rate (training.loop._optimizer says why)
    head_lr: float = 1e-3  # the head's logit scale and item bias
    weight_decay: float = 0.0
    max_train_samples: int = 0  # 0: all (smoke runs cut this)
    max_eval_samples: int = 0  # 0: all
    text_max_length: int = 128  # text encoder truncation (item descriptions, contexts)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"RecRunConfig.model must be one of {MODELS}, got {self.model!r}")
        if self.dataset not in ("inspired", "redial"):
            raise ValueError(f"RecRunConfig.dataset must be 'inspired' or 'redial', got {self.dataset!r}")
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"RecRunConfig.lambda_ must lie in [0, 1], got {self.lambda_}")
        if self.k < 1:
            raise ValueError(f"RecRunConfig.k must be >= 1, got {self.k}")
        if self.select_rule not in ("one_se", "best"):
            raise ValueError(f"RecRunConfig.select_rule must be 'one_se' or 'best', got {self.select_rule!r}")
        if self.lm_trains not in ("prompt", "all"):
            raise ValueError(f"RecRunConfig.lm_trains must be 'prompt' or 'all', got {self.lm_trains!r}")
        if self.rec_epochs < 0 or self.warm_epochs < 0 or self.rec_epochs + self.warm_epochs < 1:
            raise ValueError(f"RecRunConfig: rec_epochs + warm_epochs must be >= 1 (got {self.rec_epochs}, "
                             f"{self.warm_epochs})")

    def name(self) -> str:
        graphs = "".join(c for c, on in (("c", self.use_collab), ("t", self.use_text), ("i", self.use_image)) if on)
        return f"{self.dataset}-{self.model}-g{graphs or '0'}-k{self.k}-l{self.lambda_}-s{self.seed}-{self.digest()}"

    def recommender_config(self):
        """The :class:`~mscrs_core.models.recommender.RecommenderConfig` of this run."""
        from ..models.recommender import RecommenderConfig

        return RecommenderConfig(n_entity_prompt=self.n_entity_prompt, n_task_prompt=self.n_task_prompt,
                                 fuse_weight=self.fuse_weight, fuse_variant=self.fuse_variant,
                                 rec_scope=self.rec_scope, head=self.head, item_bias=self.item_bias,
                                 entity_skip=self.entity_skip, zero_init_projection=self.zero_init_projection,
                                 lm_scale=self.lm_scale, mention_bias=self.mention_bias,
                                 prompt_position=self.prompt_position)

    def shared_caches(self) -> tuple[tuple, ...]:
        keys: list[tuple] = []
        if self.model in ("mscrs", "unicrs", "graph_scorer", "entity_mean", "zero_shot_text"):
            keys.append(("item text features", self.dataset))
        if self.model in ("mscrs", "unicrs") and self.backbone == "tiny-dialogpt":
            keys.append(("tiny-dialogpt", self.dataset, self.backbone_epochs))
        if self.model in ("mscrs", "unicrs") and self.backbone in OFFLINE_SHORTCUTS:
            keys.append(("backbone", self.backbone))
        if self.model in ("text_classifier", "zero_shot_text"):
            keys.append(("context features", self.dataset, self.max_train_samples, self.max_eval_samples,
                         self.text_max_length))
        return tuple(keys)

    def prepare_caches(self, data_root: str | None = None, cache_dir: str | None = None) -> None:
        from ..data import load_dataset

        keys = {k[0] for k in self.shared_caches()}
        if not keys:
            return
        cache = Path(cache_dir) if cache_dir else project_root() / "cache"
        ds = load_dataset(self.dataset, data_root)
        if "item text features" in keys:
            from ..graphs.assemble import build_dataset_graphs

            build_dataset_graphs(ds, graph_settings(self.k, self.comention_threshold, self.graph_variant, cache),
                                 data_root)
        if "tiny-dialogpt" in keys:
            tiny_dialogpt_for(ds, cache, self.backbone_epochs)
        if "backbone" in keys:  # the GGUF -> safetensors conversion, once
            load_backbone_for(self, ds, cache)
        if "context features" in keys:
            from ..baselines.text_classifier import cached_contexts

            train, valid, test = rec_splits(self, ds)
            cached_contexts(train + valid + test, self.text_classifier_config(), cache / f"{self.dataset}-contexts")

    def text_classifier_config(self):
        """The text classifier baseline's settings for this run."""
        from ..baselines import TextClassifierConfig

        return TextClassifierConfig(max_length=self.text_max_length, seed=self.seed)

    def relative_cost(self) -> float:
        # measured on 2 cores: prompt runs dominate, ReDial's (64k-entity graph, 5k samples) most of all
        per_model = {"mscrs": 10.0, "unicrs": 8.0, "text_classifier": 1.0, "entity_mean": 2.0,
                     "zero_shot_text": 0.5}.get(self.model, 0.1)
        if self.model in ("mscrs", "unicrs") and self.backbone != "tiny-dialogpt":
            per_model *= 3.0
        return per_model * (6.0 if self.dataset == "redial" else 1.0)


def default_results_dir() -> Path:
    """Where runs write ``<run name>/result.json`` when no ``results_dir`` is given: ``$MSCRS_RESULTS_DIR``, else
    ``build/runs``. ``make test-notebooks`` points it into ``build/nbval/runs``, which it empties first, so the smoke
    runs train afresh and the regression test (``tests/regression``) sees what the code computes now."""
    env = os.environ.get("MSCRS_RESULTS_DIR")
    return Path(env) if env else project_root() / "build" / "runs"


def _atomic_json(obj: Any, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


def _subsample(samples: list, n: int, seed: int = 0) -> list:
    if n <= 0 or len(samples) <= n:
        return samples
    idx = np.random.default_rng(seed).permutation(len(samples))[:n]
    return [samples[i] for i in sorted(idx)]


def rec_splits(cfg: RecRunConfig, ds) -> tuple[list, list, list]:
    """The training, validation and test recommendation samples a run of ``cfg`` uses."""
    from ..data import rec_samples

    return tuple(_subsample(rec_samples(ds.dialogs(split), ds.item_ids), n)  # type: ignore[return-value]
                 for split, n in (("train", cfg.max_train_samples), ("valid", cfg.max_eval_samples),
                                  ("test", cfg.max_eval_samples)))


def load_result(run_dir: str | os.PathLike) -> dict[str, Any]:
    p = Path(run_dir) / "result.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no finished run here")
    return read_result(p)  # a damaged file: an error naming it, not a bare JSONDecodeError


def _evaluate_scores(scores: torch.Tensor, samples: list, item_pos: dict[int, int],
                     popularity: torch.Tensor | None = None) -> tuple[dict, dict, dict]:
    """Metrics (ties never in the model's favour), per-sample values, and the slices: gold already mentioned in
    the dialog / new item, plus the share of samples whose top-1 item is popularity's top-1."""
    from ..evaluation import RankingEvaluator, gold_was_mentioned, slice_metrics, top1_agreement

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


def tiny_dialogpt_for(dataset, cache_dir: Path, epochs: float = 2.0, seed: int = 0) -> Path:
    """The project's miniature DialoGPT, pre-trained once per dataset on its training dialogs (cached)."""
    from ..models import TinyDialoGPTConfig, pretrain_tiny_dialogpt

    from ..models.collate import ROLE_PREFIX

    # the same "User: ... <eos> System: ... <eos>" format the recommender and generator feed it
    dialogs = [[ROLE_PREFIX[t.role] + t.text for t in d.turns] for d in dataset.dialogs("train")]
    return pretrain_tiny_dialogpt(dialogs, cache_dir / f"tiny-dialogpt-{dataset.name}-e{epochs:g}-roles",
                                  TinyDialoGPTConfig(epochs=epochs), seed=seed, progress=False)


def graph_settings(k: int, comention_threshold: int = 1, graph_variant: str = "paper",
                   cache_dir: str | os.PathLike | None = None):
    """The :class:`~mscrs_core.graphs.assemble.GraphSettings` every run uses (recommendation and conversation
    runs of the same ``k`` share one set of graphs, which ``mscrs chat`` checkpoints rely on)."""
    from ..graphs.assemble import GraphSettings

    return GraphSettings(k=k, comention_threshold=comention_threshold, knn_symmetric=graph_variant == "paper",
                         text_max_length=256, cache_dir=None if cache_dir is None else str(cache_dir))


def build_recommender(cfg: RecRunConfig, ds, graphs, backbone, tokenizer):
    """The untrained :class:`~mscrs_core.models.MSCRSRecommender` of ``cfg`` on ``graphs`` (a
    :class:`~mscrs_core.graphs.assemble.DatasetGraphs`): ``"unicrs"`` switches every semantic graph off."""
    from ..graphs.fusion import GraphConfig
    from ..models import MSCRSRecommender

    if cfg.model not in ("mscrs", "unicrs"):
        raise ValueError(f"build_recommender: {cfg.model!r} is not a prompt model (expected 'mscrs' or 'unicrs')")
    on = cfg.model == "mscrs"
    gcfg = GraphConfig(dim=cfg.entity_dim, lambda_=cfg.lambda_, use_collab=on and cfg.use_collab,
                       use_text=on and cfg.use_text, use_image=on and cfg.use_image, variant=cfg.graph_variant,
                       authors_dataset=cfg.dataset)
    torch.manual_seed(cfg.seed)
    encoder = graphs.encoder(gcfg)
    torch.manual_seed(cfg.seed)
    return MSCRSRecommender(encoder, backbone, torch.as_tensor(ds.item_ids), tokenizer=tokenizer,
                            config=cfg.recommender_config())


def _lm_free_graph_encoder(cfg: RecRunConfig, ds, cache: Path, data_root):
    """The semantic graph encoder of ``cfg``'s graph switches (seeded) for the scorers without a language model."""
    from ..graphs.assemble import build_dataset_graphs
    from ..graphs.fusion import GraphConfig

    graphs = build_dataset_graphs(ds, graph_settings(cfg.k, cfg.comention_threshold, cfg.graph_variant, cache),
                                  data_root)
    torch.manual_seed(cfg.seed)
    return graphs.encoder(GraphConfig(dim=cfg.entity_dim, lambda_=cfg.lambda_, use_collab=cfg.use_collab,
                                      use_text=cfg.use_text, use_image=cfg.use_image, variant=cfg.graph_variant,
                                      authors_dataset=cfg.dataset))


def load_backbone_for(cfg: RecRunConfig, ds, cache: Path):
    """The frozen backbone and tokenizer of ``cfg`` (a GGUF shortcut is converted once into ``cache/backbones``)."""
    from ..models import load_backbone

    path = tiny_dialogpt_for(ds, cache, cfg.backbone_epochs) if cfg.backbone == "tiny-dialogpt" else cfg.backbone
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.backbone_dtype]
    backbone, tokenizer = load_backbone(str(path), dtype=dtype, attn_implementation=cfg.attn_implementation,
                                        cache_dir=cache / "backbones")
    return path, backbone, tokenizer


def context_bank_for(model, collator, splits: dict[str, list], *, dataset: str, cache: Path):
    """The suffix order's :class:`~mscrs_core.models.context_states.ContextStateBank`, filled for every split.

    One file per split under ``cache/context-states``, named by backbone, dataset, split and context length
    (:func:`~mscrs_core.models.context_states.bank_file_name`): a later run with the same keys loads it instead
    of running the backbone over the contexts again, and a change of any key computes a new file.
    """
    from ..models.context_states import ContextStateBank, bank_file_name

    bank = ContextStateBank(model.backbone, collator.max_length, model.tokenizer.pad_token_id)
    folder = cache / "context-states"
    for split, samples in splits.items():
        path = folder / bank_file_name(model.backbone, dataset, split, collator.max_length)
        part = ContextStateBank(model.backbone, collator.max_length, model.tokenizer.pad_token_id)
        part.load(path)
        rows = [tuple(collator.token_ids(s)) for s in samples]
        if any(r not in part for r in rows):
            # computed rows stream to the file; read back memory-mapped, runs of one dataset share its pages
            part.save(path, compute=rows)
            part = ContextStateBank(model.backbone, collator.max_length, model.tokenizer.pad_token_id)
            part.load(path)
        bank.merge(part)
    return bank


def run_recommendation(cfg: RecRunConfig, results_dir: str | os.PathLike | None = None,
                       data_root: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None,
                       progress: bool = False) -> dict[str, Any]:
    """Train and evaluate one configuration; see the module docstring. Returns the result record."""
    from ..data import load_dataset, rec_samples, pretrain_samples

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
    record: dict[str, Any] = {"config": asdict(cfg), "name": cfg.name(),
                              "samples": {"train": len(train), "valid": len(valid), "test": len(test)}}

    from ..baselines import popularity_scores

    pop = popularity_scores(train, ds.item_ids)  # the baseline, a reference, the item-bias init and the slices
    if cfg.model == "popularity":
        valid_scores, test_scores, history = pop.expand(len(valid), -1), pop.expand(len(test), -1), []
    elif cfg.model == "graph_scorer":
        from ..baselines import graph_scores

        encoder = _lm_free_graph_encoder(cfg, ds, cache, data_root)
        valid_scores, test_scores = graph_scores(encoder, valid, ds.item_ids), graph_scores(encoder, test, ds.item_ids)
        history = []
        record["graphs"] = {k: v for k, v in encoder.describe().items() if k != "config"}
    elif cfg.model == "copy_context":
        from ..baselines import copy_context_scores

        valid_scores = copy_context_scores(valid, ds.item_ids, pop)
        test_scores, history = copy_context_scores(test, ds.item_ids, pop), []
    elif cfg.model == "zero_shot_text":
        from ..baselines import ZeroShotTextConfig, item_texts_for, zero_shot_text_scores

        valid_scores, test_scores, history = zero_shot_text_scores(
            train, valid, test, ds.item_ids, item_texts_for(ds, data_root, with_title=True),
            ZeroShotTextConfig(max_length=cfg.text_max_length), cache / f"{cfg.dataset}-contexts")
    elif cfg.model == "entity_mean":
        from ..baselines import EntityMeanConfig, train_entity_mean

        encoder = _lm_free_graph_encoder(cfg, ds, cache, data_root)
        # the same epoch budget as the MSCRS warm-up, which trains this very scorer inside the prompt model
        valid_scores, test_scores, history = train_entity_mean(
            encoder, train, valid, test, ds.item_ids, EntityMeanConfig(epochs=max(cfg.warm_epochs, 1), seed=cfg.seed))
    elif cfg.model == "text_classifier":
        from ..baselines import train_text_classifier

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
    _atomic_json(seal(record, fingerprint), result_path)
    record["reused"] = False
    return record


def lm_stage_wins(warm_recall: float, lm_recall: float, n_valid: int, rule: str = "one_se") -> bool:
    """Does validation keep the language-model stage rather than the warm-up (which has no LM)?

    ``"best"``: whichever has the higher validation Recall@10 (ties keep the warm-up). ``"one_se"``: the one
    standard error rule (Breiman et al. 1984; Hastie et al., *Elements of Statistical Learning*, 7.10): the larger
    model must beat the smaller one by more than the binomial standard error of the smaller one's recall,
    sqrt(r (1 - r) / n_valid). With a few hundred validation samples, an epoch-by-epoch maximum over the LM stage
    otherwise wins by chance about as often as by merit.
    """
    if rule == "best":
        return lm_recall > warm_recall
    if rule != "one_se":
        raise ValueError(f"rule: expected 'one_se' or 'best', got {rule!r}")
    if n_valid < 1:
        raise ValueError(f"n_valid: expected >= 1, got {n_valid}")
    return lm_recall > warm_recall + math.sqrt(max(warm_recall * (1.0 - warm_recall), 0.0) / n_valid)


def _train_prompt_model(cfg: RecRunConfig, ds, train, valid, test, popularity: torch.Tensor, run_dir: Path,
                        cache: Path, data_root, progress: bool):
    from ..data import pretrain_samples
    from ..graphs.assemble import build_dataset_graphs
    from ..models import RecCollator
    from ..training import TrainConfig, train as train_loop

    graphs = build_dataset_graphs(ds, graph_settings(cfg.k, cfg.comention_threshold, cfg.graph_variant, cache),
                                  data_root)
    path, backbone, tokenizer = load_backbone_for(cfg, ds, cache)
    model = build_recommender(cfg, ds, graphs, backbone, tokenizer)
    if model.config.item_bias:
        model.init_item_bias(popularity)
    encoder = model.graph_encoder
    q = model.prompt_encoder.max_entities
    collator = RecCollator(tokenizer, max_length=cfg.max_length, max_entities=q)
    pre_collator = RecCollator(tokenizer, max_length=cfg.max_length, max_entities=q, include_response=True)
    pre_train = pre_valid = []
    if cfg.pretrain_epochs > 0:
        pre_train = _subsample(pretrain_samples(ds.dialogs("train")), cfg.pretrain_max_samples)
        pre_valid = _subsample(pretrain_samples(ds.dialogs("valid")), max(cfg.pretrain_max_samples // 5, 1)
                               if cfg.pretrain_max_samples else 0)
    t_bank = time.perf_counter()
    if cfg.prompt_position == "suffix":
        bank = context_bank_for(model, collator, {"train": train, "valid": valid, "test": test},
                                dataset=cfg.dataset, cache=cache)
        if pre_train:
            bank.merge(context_bank_for(model, pre_collator, {"pretrain-train": pre_train,
                                                              "pretrain-valid": pre_valid},
                                        dataset=cfg.dataset, cache=cache))
        model.attach_context_bank(bank)
    bank_seconds = round(time.perf_counter() - t_bank, 1)
    history: list[dict] = []
    common = dict(batch_size=cfg.batch_size, lr=cfg.lr, graph_lr=cfg.graph_lr, entity_lr=cfg.entity_lr,
                  head_lr=cfg.head_lr, weight_decay=cfg.weight_decay, seed=cfg.seed, max_length=cfg.max_length, progress=progress)
    if cfg.pretrain_epochs > 0:
        res = train_loop(model, pre_train, pre_valid, TrainConfig(
            output_dir=str(run_dir / "pretrain"), task="pretrain", epochs=cfg.pretrain_epochs, **common),
            collator=pre_collator)
        history += [{"stage": "pretrain", **h} for h in res.history]
    warm = None
    if cfg.warm_epochs > 0 and model.config.entity_skip:
        # the graph side, scale and bias first, without the language model (no backbone pass: cheap)
        model.close_lm_path()
        warm = train_loop(model, train, valid, TrainConfig(
            output_dir=str(run_dir / "warm"), task="rec", epochs=cfg.warm_epochs,
            **{**common, "lr": cfg.warm_lr, "head_lr": cfg.warm_lr, "graph_lr": cfg.warm_graph_lr,
               "entity_lr": cfg.warm_graph_lr}), collator=collator)
        model.close_lm_path(False)
        history += [{"stage": "warm-up (no LM)", **h} for h in warm.history]
    selected, lm_best = "rec", None
    if cfg.rec_epochs > 0:
        # after a warm-up the graph side, head and biases are trained: the LM stage learns what the language
        # model adds on top of them (lm_trains="prompt") instead of re-fitting them beside a new, noisy term
        frozen = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(
            ("prompt_encoder.", "projection."))] if warm is not None and cfg.lm_trains == "prompt" else []
        for p in frozen:
            p.requires_grad_(False)
        try:
            res = train_loop(model, train, valid, TrainConfig(
                output_dir=str(run_dir / "rec"), task="rec", epochs=cfg.rec_epochs, **common), collator=collator)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        history += [{"stage": "rec", **h} for h in res.history]
        lm_best = res.best_metric
    if warm is not None and (cfg.rec_epochs == 0 or not lm_stage_wins(warm.best_metric, res.best_metric, len(valid),
                                                                         cfg.select_rule)):
        # validation prefers the warm-up's weights: keep them, the language model stays out (stated in the result)
        from ..training.checkpoint import load_checkpoint

        model.load_trainable_state_dict(load_checkpoint(warm.best_path)["model"])
        model.close_lm_path()
        res, selected = warm, "warm-up (no LM)"
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
             "stage_valid_recall@10": {"warm-up (no LM)": None if warm is None else warm.best_metric,
                                       "rec": None if cfg.rec_epochs == 0 else lm_best},
             "select_rule": cfg.select_rule,
             "context_state_seconds": bank_seconds,
             "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    return scores[0], scores[1], history, extra
