"""The configuration of one recommendation run: run-level values and one section per part of the run.

:class:`RecRunConfig` composes a :class:`RecDataConfig` (which samples), a :class:`RecGraphConfig` (the semantic
graphs, section 4.2), a :class:`BackboneConfig` (the frozen language model), the model's own
:class:`~mscrs_core.models.recommender.RecommenderConfig` (section 4.3; every model default is written there,
once) and a :class:`RecTrainingConfig` (the schedule of pre-training, warm-up and recommendation training).
Chapter 3's parameters cell lists the same names flat (``RunConfig.of`` routes them; ``tests/
test_chapter_parameters.py`` fails when the cell and these dataclasses disagree).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ...data.files import project_root
from ...models.backbone import OFFLINE_SHORTCUTS
from ...models.recommender import RecommenderConfig
from ..run_config import RunConfig

MODELS = ("mscrs", "unicrs", "popularity", "text_classifier", "graph_scorer", "copy_context", "zero_shot_text",
          "entity_mean")
#: the models that train the prompt recommender on a backbone
PROMPT_MODELS = ("mscrs", "unicrs")


@dataclass(frozen=True)
class RecDataConfig:
    """Which samples a run reads (0: all of a split; the smoke profile cuts them) and how much of each."""

    max_train_samples: int = 0
    max_eval_samples: int = 0
    text_max_length: int = 128  # text encoder truncation (item descriptions, contexts)
    max_length: int = 64  # context tokens the backbone reads (the newest); UniCRS uses 200, the CPU budget 64


@dataclass(frozen=True)
class RecGraphConfig:
    """The semantic graphs of section 4.2 (Eq. 1-16)."""

    k: int = 10
    lambda_: float = 0.5
    use_collab: bool = True
    use_text: bool = True
    use_image: bool = True
    graph_variant: str = "paper"  # "paper" | "authors_code": which graph recipe (graphs.fusion.GraphConfig)
    comention_threshold: int = 1
    entity_dim: int = 64  # the R-GCN over all entities runs every step: 64 keeps a CPU step affordable

    def __post_init__(self) -> None:
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"RecRunConfig.lambda_ must lie in [0, 1], got {self.lambda_}")
        if self.k < 1:
            raise ValueError(f"RecRunConfig.k must be >= 1, got {self.k}")

    def settings(self, cache_dir: str | os.PathLike | None = None):
        """The :class:`~mscrs_core.graphs.assemble.GraphSettings` of these graphs."""
        from .build import graph_settings

        return graph_settings(self.k, self.comention_threshold, self.graph_variant, cache_dir)

    def encoder_config(self, dataset: str, semantic: bool = True):
        """The :class:`~mscrs_core.graphs.fusion.GraphConfig` of the encoder; ``semantic=False`` switches every
        semantic graph off (the knowledge graph alone: UniCRS)."""
        from ...graphs.fusion import GraphConfig

        return GraphConfig(dim=self.entity_dim, lambda_=self.lambda_, use_collab=semantic and self.use_collab,
                           use_text=semantic and self.use_text, use_image=semantic and self.use_image,
                           variant=self.graph_variant, authors_dataset=dataset)


@dataclass(frozen=True)
class BackboneConfig:
    """The frozen causal language model (recommendation and conversation runs share this section)."""

    backbone: str = "smollm2-135m"  # or "tiny-dialogpt", a Hugging Face name/path, "microsoft/DialoGPT-small"
    backbone_epochs: float = 2.0  # pre-training epochs of the tiny DialoGPT (only for backbone="tiny-dialogpt")
    # "auto" | "float32" | "bfloat16" (the frozen backbone only; prompt and graphs fp32). "auto" becomes bfloat16
    # where the hardware computes it natively and float32 elsewhere (emulated bfloat16 is ~50x slower on AVX2)
    backbone_dtype: str = "auto"
    attn_implementation: str = "eager"  # on CPU eager attention's backward beats the fused kernel's at these sizes

    def __post_init__(self) -> None:
        import torch

        from ...models.backbone import resolve_dtype_name

        object.__setattr__(self, "backbone_dtype", resolve_dtype_name(self.backbone_dtype))
        if not isinstance(getattr(torch, self.backbone_dtype, None), torch.dtype):
            raise ValueError(f"backbone_dtype: not a torch dtype name: {self.backbone_dtype!r}")


@dataclass(frozen=True)
class RecTrainingConfig:
    """Pre-training (Eq. 22), a warm-up without the language model, then recommendation training (Eq. 24)."""

    pretrain_epochs: int = 1
    pretrain_max_samples: int = 1000  # 0: all pre-training samples
    warm_epochs: int = 5  # Eq. (24) with the language-model path closed first (RecommenderConfig, close_lm_path)
    warm_lr: float = 1e-2  # the warm-up's rate (head, prompt); its graph and entity-table rate: warm_graph_lr
    warm_graph_lr: float = 1e-3
    rec_epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    graph_lr: float = 1e-3  # the graph encoder's rate (R-GCN, LightGCN); see training.recommendation
    entity_lr: float = 1e-5  # the entity table's own rate (training.recommendation.recommender_param_groups)
    head_lr: float = 1e-3  # the head's logit scale and item bias
    text_lr: float = 1e-3  # the maps of the context's text features (context_encoder="text_encoder"), every stage
    weight_decay: float = 0.0
    lm_trains: str = "prompt"  # after a warm-up: "prompt" (prompt encoder + projection only) | "all"
    select_rule: str = "one_se"  # warm-up vs LM stage: "one_se" (the LM must win by a standard error) | "best"

    def __post_init__(self) -> None:
        if self.select_rule not in ("one_se", "best"):
            raise ValueError(f"RecRunConfig.select_rule must be 'one_se' or 'best', got {self.select_rule!r}")
        if self.lm_trains not in ("prompt", "all"):
            raise ValueError(f"RecRunConfig.lm_trains must be 'prompt' or 'all', got {self.lm_trains!r}")
        if self.rec_epochs < 0 or self.warm_epochs < 0 or self.rec_epochs + self.warm_epochs < 1:
            raise ValueError(f"RecRunConfig: rec_epochs + warm_epochs must be >= 1 (got {self.rec_epochs}, "
                             f"{self.warm_epochs})")

    def stage(self, stage: str, output_dir: str | os.PathLike | None, *, seed: int, max_length: int, progress: bool):
        """The :class:`~mscrs_core.training.recommendation.TrainConfig` of one stage: ``"pretrain"``,
        ``"warm"`` (its own rates: head and prompt ``warm_lr``, graph and table ``warm_graph_lr``) or ``"rec"``."""
        from ...training import TrainConfig

        rates = dict(lr=self.lr, graph_lr=self.graph_lr, entity_lr=self.entity_lr, head_lr=self.head_lr,
                     text_lr=self.text_lr)
        epochs = {"pretrain": self.pretrain_epochs, "warm": self.warm_epochs, "rec": self.rec_epochs}[stage]
        if stage == "warm":
            rates = dict(lr=self.warm_lr, head_lr=self.warm_lr, graph_lr=self.warm_graph_lr,
                         entity_lr=self.warm_graph_lr, text_lr=self.text_lr)
        return TrainConfig(output_dir=None if output_dir is None else str(output_dir), task="pretrain" if stage == "pretrain" else "rec",
                           epochs=epochs, batch_size=self.batch_size, weight_decay=self.weight_decay, seed=seed,
                           max_length=max_length, progress=progress, **rates)


def run_recommender_config() -> RecommenderConfig:
    """The recommender of a run: the model's defaults, except T_s from the sentence encoder with the text skip path
    (``context_encoder="text_encoder"``, ``text_skip=True``), chosen on validation over the model's own default
    (T_s from the backbone's input embeddings): Recall@10 of the warm-up stage 0.311 against 0.284, mean of seeds
    0-2 (chapter 3). The model class keeps the choice that needs no second encoder. Also the backbone's title
    readout (``title_readout=True``, :mod:`~mscrs_core.models.title_readout`), chosen on validation the same way
    (warm-up stage alone, no pre-training, seeds 0-2): Recall@10 0.320 against 0.304, higher on every seed."""
    return RecommenderConfig(context_encoder="text_encoder", text_skip=True, title_readout=True)


@dataclass(frozen=True)
class RecRunConfig(RunConfig):
    """One recommendation run (Table 2, Figures 4a-b and 5): which model on which data, and its sections."""

    dataset: str = "inspired"
    model: str = "mscrs"
    seed: int = 0
    data: RecDataConfig = field(default_factory=RecDataConfig)
    graphs: RecGraphConfig = field(default_factory=RecGraphConfig)
    language_model: BackboneConfig = field(default_factory=BackboneConfig)
    recommender: RecommenderConfig = field(default_factory=lambda: run_recommender_config())
    training: RecTrainingConfig = field(default_factory=RecTrainingConfig)

    SECTIONS: ClassVar[tuple[str, ...]] = ("data", "graphs", "language_model", "recommender", "training")
    # RecommenderConfig fields chapter 3 did not set before the run configuration composed it: at their defaults
    # they leave the digests (and folder names) of earlier runs as they were
    DIGEST_SINCE_DEFAULTS: ClassVar[tuple[str, ...]] = ("max_entities", "tau", "init_scale", "mention_init",
                                                        "readout", "context_encoder", "context_text_dim",
                                                        "text_skip", "text_lr", "title_readout", "title_cue",
                                                        "prompt_injection")
    # T_s from the text encoder and the text skip path became the default (chosen on validation, chapter 3); the
    # runs recorded before had neither
    DIGEST_LEGACY_VALUES: ClassVar[dict[str, Any]] = {"context_encoder": "backbone_embeddings", "text_skip": False,
                                                      "title_readout": False}

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"RecRunConfig.model must be one of {MODELS}, got {self.model!r}")
        if self.dataset not in ("inspired", "redial"):
            raise ValueError(f"RecRunConfig.dataset must be 'inspired' or 'redial', got {self.dataset!r}")

    def name(self) -> str:
        graphs = "".join(c for c, on in (("c", self.use_collab), ("t", self.use_text), ("i", self.use_image)) if on)
        return f"{self.dataset}-{self.model}-g{graphs or '0'}-k{self.k}-l{self.lambda_}-s{self.seed}-{self.digest()}"

    def recommender_config(self) -> RecommenderConfig:
        """The :class:`~mscrs_core.models.recommender.RecommenderConfig` of this run."""
        return self.recommender

    def text_classifier_config(self):
        """The text classifier baseline's settings for this run."""
        from ...baselines import TextClassifierConfig

        return TextClassifierConfig(max_length=self.text_max_length, seed=self.seed)

    # -- sweep scheduling hooks -------------------------------------------------------------------------------
    def shared_caches(self) -> tuple[tuple, ...]:
        keys: list[tuple] = []
        if self.model in ("mscrs", "unicrs", "graph_scorer", "entity_mean", "zero_shot_text"):
            keys.append(("item text features", self.dataset))
        if self.model in PROMPT_MODELS and self.backbone == "tiny-dialogpt":
            keys.append(("tiny-dialogpt", self.dataset, self.backbone_epochs))
        if self.model in PROMPT_MODELS and self.backbone in OFFLINE_SHORTCUTS:
            keys.append(("backbone", self.backbone))
        if self.model in ("text_classifier", "zero_shot_text"):
            keys.append(("context features", self.dataset, self.max_train_samples, self.max_eval_samples,
                         self.text_max_length))
        return tuple(keys)

    def prepare_caches(self, data_root: str | None = None, cache_dir: str | None = None) -> None:
        from ...data import load_dataset
        from .build import load_backbone_for, rec_splits, tiny_dialogpt_for

        keys = {k[0] for k in self.shared_caches()}
        if not keys:
            return
        cache = Path(cache_dir) if cache_dir else project_root() / "cache"
        ds = load_dataset(self.dataset, data_root)
        if "item text features" in keys:
            from ...graphs.assemble import build_dataset_graphs

            build_dataset_graphs(ds, self.graphs.settings(cache), data_root)
        if "tiny-dialogpt" in keys:
            tiny_dialogpt_for(ds, cache, self.backbone_epochs)
        if "backbone" in keys:  # the GGUF -> safetensors conversion, once
            load_backbone_for(self, ds, cache)
        if "context features" in keys:
            from ...baselines.text_classifier import cached_contexts

            train, valid, test = rec_splits(self, ds)
            cached_contexts(train + valid + test, self.text_classifier_config(), cache / f"{self.dataset}-contexts")

    def relative_cost(self) -> float:
        # measured on 2 cores: prompt runs dominate, ReDial's (64k-entity graph, 5k samples) most of all
        per_model = {"mscrs": 10.0, "unicrs": 8.0, "text_classifier": 1.0, "entity_mean": 2.0,
                     "zero_shot_text": 0.5}.get(self.model, 0.1)
        if self.model in PROMPT_MODELS and self.backbone != "tiny-dialogpt":
            per_model *= 3.0
        return per_model * (6.0 if self.dataset == "redial" else 1.0)
