"""One recommendation run (Table 2, Figures 4a-b and 5): configure, train, evaluate, record.

:func:`run_recommendation` trains one model under a :class:`RecRunConfig` and writes
``<results_dir>/<run name>/result.json`` atomically; a finished run found there with the same
configuration is loaded instead of re-trained (sweeps resume without redoing points), and an
interrupted run resumes from its per-epoch checkpoints (``mscrs_core.training.loop``).

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

Protocol: each gold item of a recommender turn is its own sample; scores over the whole item set;
model selection on the validation split only; the test split is scored once at the end.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_text
from ..data.files import project_root
from .run_config import RunConfig

MODELS = ("mscrs", "unicrs", "popularity", "text_classifier", "graph_scorer")


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
    backbone: str = "tiny-dialogpt"  # or a Hugging Face name/path, "smollm2-135m", "microsoft/DialoGPT-small"
    backbone_epochs: float = 2.0  # pre-training epochs of the tiny DialoGPT (only for backbone="tiny-dialogpt")
    n_task_prompt: int = 10
    n_entity_prompt: int = 4
    fuse_weight: float = 0.1
    fuse_variant: str = "paper"
    rec_scope: str = "items"  # "items" (Eq. 23) | "all_entities" (UniCRS / authors' code)
    max_length: int = 64  # context tokens (the newest); UniCRS uses 200, the CPU budget 64
    # training
    pretrain_epochs: int = 1
    pretrain_max_samples: int = 1000  # 0: all pre-training samples
    rec_epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    graph_lr: float = 1e-3  # the graph encoder's rate (entity table, R-GCN); see training.loop._optimizer
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

    def name(self) -> str:
        graphs = "".join(c for c, on in (("c", self.use_collab), ("t", self.use_text), ("i", self.use_image)) if on)
        return f"{self.dataset}-{self.model}-g{graphs or '0'}-k{self.k}-l{self.lambda_}-s{self.seed}-{self.digest()}"

    def shared_caches(self) -> tuple[tuple, ...]:
        keys: list[tuple] = []
        if self.model in ("mscrs", "unicrs", "graph_scorer"):
            keys.append(("item text features", self.dataset))
        if self.model in ("mscrs", "unicrs") and self.backbone == "tiny-dialogpt":
            keys.append(("tiny-dialogpt", self.dataset, self.backbone_epochs))
        if self.model == "text_classifier":
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
        per_model = {"mscrs": 10.0, "unicrs": 8.0, "text_classifier": 1.0}.get(self.model, 0.1)
        return per_model * (6.0 if self.dataset == "redial" else 1.0)


def default_results_dir() -> Path:
    return project_root() / "build" / "runs"


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
    return json.loads(p.read_text())


def _evaluate_scores(scores: torch.Tensor, samples: list, item_pos: dict[int, int]) -> tuple[dict, dict]:
    from ..evaluation import RankingEvaluator

    gold = torch.tensor([item_pos[s.target] for s in samples])
    exclude = [[item_pos[e] for e in s.mentioned_items if e in item_pos] for s in samples]
    ev = RankingEvaluator()
    ev.update(scores, gold, exclude=exclude)
    per = ev.per_sample()
    return ev.compute(), {k: np.asarray(v).tolist() for k, v in per.items() if not k.startswith("excl/")}


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
                            n_entity_prompt=cfg.n_entity_prompt, n_task_prompt=cfg.n_task_prompt,
                            fuse_weight=cfg.fuse_weight, fuse_variant=cfg.fuse_variant, rec_scope=cfg.rec_scope)


def run_recommendation(cfg: RecRunConfig, results_dir: str | os.PathLike | None = None,
                       data_root: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None,
                       progress: bool = False) -> dict[str, Any]:
    """Train and evaluate one configuration; see the module docstring. Returns the result record."""
    from ..data import load_dataset, rec_samples, pretrain_samples

    run_dir = Path(results_dir or default_results_dir()) / cfg.name()
    result_path = run_dir / "result.json"
    if result_path.is_file():
        res = json.loads(result_path.read_text())
        if res.get("config") == asdict(cfg):
            res["reused"] = True
            return res
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

    if cfg.model == "popularity":
        from ..baselines import popularity_scores

        pop = popularity_scores(train, ds.item_ids)
        valid_scores, test_scores, history = pop.expand(len(valid), -1), pop.expand(len(test), -1), []
    elif cfg.model == "graph_scorer":
        from ..baselines import graph_scores
        from ..graphs.assemble import build_dataset_graphs
        from ..graphs.fusion import GraphConfig

        graphs = build_dataset_graphs(ds, graph_settings(cfg.k, cfg.comention_threshold, cfg.graph_variant, cache),
                                      data_root)
        torch.manual_seed(cfg.seed)
        encoder = graphs.encoder(GraphConfig(dim=cfg.entity_dim, lambda_=cfg.lambda_, use_collab=cfg.use_collab,
                                             use_text=cfg.use_text, use_image=cfg.use_image,
                                             variant=cfg.graph_variant, authors_dataset=cfg.dataset))
        valid_scores, test_scores = graph_scores(encoder, valid, ds.item_ids), graph_scores(encoder, test, ds.item_ids)
        history = []
        record["graphs"] = {k: v for k, v in encoder.describe().items() if k != "config"}
    elif cfg.model == "text_classifier":
        from ..baselines import train_text_classifier

        valid_scores, test_scores, history = train_text_classifier(train, valid, test, ds.item_ids,
                                                                   cfg.text_classifier_config(),
                                                                   cache / f"{cfg.dataset}-contexts")
    else:
        valid_scores, test_scores, history, extra = _train_prompt_model(cfg, ds, train, valid, test, run_dir, cache,
                                                                        data_root, progress)
        record.update(extra)
    record["valid"], _ = _evaluate_scores(valid_scores, valid, item_pos)
    record["test"], record["test_per_sample"] = _evaluate_scores(test_scores, test, item_pos)
    record["test_sample_ids"] = [f"{s.dialog_id}#{s.turn_index}#{s.target}" for s in test]
    record["history"] = history
    record["seconds"] = round(time.perf_counter() - t0, 1)
    _atomic_json(record, result_path)
    record["reused"] = False
    return record


def _train_prompt_model(cfg: RecRunConfig, ds, train, valid, test, run_dir: Path, cache: Path, data_root,
                        progress: bool):
    from ..data import pretrain_samples
    from ..graphs.assemble import build_dataset_graphs
    from ..models import RecCollator, load_backbone
    from ..training import TrainConfig, train as train_loop

    graphs = build_dataset_graphs(ds, graph_settings(cfg.k, cfg.comention_threshold, cfg.graph_variant, cache),
                                  data_root)
    path = tiny_dialogpt_for(ds, cache, cfg.backbone_epochs) if cfg.backbone == "tiny-dialogpt" else cfg.backbone
    backbone, tokenizer = load_backbone(str(path))
    model = build_recommender(cfg, ds, graphs, backbone, tokenizer)
    encoder = model.graph_encoder
    history: list[dict] = []
    if cfg.pretrain_epochs > 0:
        pre_train = _subsample(pretrain_samples(ds.dialogs("train")), cfg.pretrain_max_samples)
        pre_valid = _subsample(pretrain_samples(ds.dialogs("valid")), max(cfg.pretrain_max_samples // 5, 1)
                               if cfg.pretrain_max_samples else 0)
        res = train_loop(model, pre_train, pre_valid, TrainConfig(
            output_dir=str(run_dir / "pretrain"), task="pretrain", epochs=cfg.pretrain_epochs,
            batch_size=cfg.batch_size, lr=cfg.lr, graph_lr=cfg.graph_lr, seed=cfg.seed, max_length=cfg.max_length,
            progress=progress))
        history += [{"stage": "pretrain", **h} for h in res.history]
    res = train_loop(model, train, valid, TrainConfig(
        output_dir=str(run_dir / "rec"), task="rec", epochs=cfg.rec_epochs, batch_size=cfg.batch_size,
        lr=cfg.lr, graph_lr=cfg.graph_lr, seed=cfg.seed, max_length=cfg.max_length, progress=progress))
    history += [{"stage": "rec", **h} for h in res.history]
    collator = RecCollator(tokenizer, max_length=cfg.max_length, max_entities=model.prompt_encoder.max_entities)
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
             "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    return scores[0], scores[1], history, extra
