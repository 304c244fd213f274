"""Building the parts of a recommendation run: its samples, graphs, backbone, model and context-state bank."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .config import PROMPT_MODELS, RecRunConfig


def subsample(samples: list, n: int, seed: int = 0) -> list:
    if n <= 0 or len(samples) <= n:
        return samples
    idx = np.random.default_rng(seed).permutation(len(samples))[:n]
    return [samples[i] for i in sorted(idx)]


def rec_splits(cfg: RecRunConfig, ds) -> tuple[list, list, list]:
    """The training, validation and test recommendation samples a run of ``cfg`` uses."""
    from ...data import rec_samples

    return tuple(subsample(rec_samples(ds.dialogs(split), ds.item_ids), n)  # type: ignore[return-value]
                 for split, n in (("train", cfg.max_train_samples), ("valid", cfg.max_eval_samples),
                                  ("test", cfg.max_eval_samples)))


def tiny_dialogpt_for(dataset, cache_dir: Path, epochs: float = 2.0, seed: int = 0) -> Path:
    """The project's miniature DialoGPT, pre-trained once per dataset on its training dialogs (cached)."""
    from ...models import TinyDialoGPTConfig, pretrain_tiny_dialogpt
    from ...models.collate import ROLE_PREFIX

    # the same "User: ... <eos> System: ... <eos>" format the recommender and generator feed it
    dialogs = [[ROLE_PREFIX[t.role] + t.text for t in d.turns] for d in dataset.dialogs("train")]
    return pretrain_tiny_dialogpt(dialogs, cache_dir / f"tiny-dialogpt-{dataset.name}-e{epochs:g}-roles",
                                  TinyDialoGPTConfig(epochs=epochs), seed=seed, progress=False)


def graph_settings(k: int, comention_threshold: int = 1, graph_variant: str = "paper",
                   cache_dir: str | os.PathLike | None = None):
    """The :class:`~mscrs_core.graphs.assemble.GraphSettings` every run uses (recommendation and conversation
    runs of the same ``k`` share one set of graphs, which ``mscrs chat`` checkpoints rely on)."""
    from ...graphs.assemble import GraphSettings

    return GraphSettings(k=k, comention_threshold=comention_threshold, knn_symmetric=graph_variant == "paper",
                         text_max_length=256, cache_dir=None if cache_dir is None else str(cache_dir))


def build_recommender(cfg: RecRunConfig, ds, graphs, backbone, tokenizer):
    """The untrained :class:`~mscrs_core.models.MSCRSRecommender` of ``cfg`` on ``graphs`` (a
    :class:`~mscrs_core.graphs.assemble.DatasetGraphs`): ``"unicrs"`` switches every semantic graph off."""
    from ...models import MSCRSRecommender

    if cfg.model not in PROMPT_MODELS:
        raise ValueError(f"build_recommender: {cfg.model!r} is not a prompt model (expected one of {PROMPT_MODELS})")
    torch.manual_seed(cfg.seed)
    encoder = graphs.encoder(cfg.graphs.encoder_config(cfg.dataset, semantic=cfg.model == "mscrs"))
    torch.manual_seed(cfg.seed)
    titles = None
    if cfg.recommender.title_readout:
        from ...models.title_readout import item_title

        titles = [item_title(ds.name_of(e)) for e in ds.item_ids]
    return MSCRSRecommender(encoder, backbone, torch.as_tensor(ds.item_ids), tokenizer=tokenizer,
                            config=cfg.recommender, item_titles=titles)


def lm_free_graph_encoder(cfg: RecRunConfig, ds, cache: Path, data_root):
    """The semantic graph encoder of ``cfg``'s graph switches (seeded) for the scorers without a language model."""
    from ...graphs.assemble import build_dataset_graphs

    graphs = build_dataset_graphs(ds, cfg.graphs.settings(cache), data_root)
    torch.manual_seed(cfg.seed)
    return graphs.encoder(cfg.graphs.encoder_config(cfg.dataset))


def load_backbone_for(cfg: RecRunConfig, ds, cache: Path):
    """The frozen backbone and tokenizer of ``cfg`` (a GGUF shortcut is converted once into ``cache/backbones``)."""
    from ...models import load_backbone

    path = tiny_dialogpt_for(ds, cache, cfg.backbone_epochs) if cfg.backbone == "tiny-dialogpt" else cfg.backbone
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.backbone_dtype]
    backbone, tokenizer = load_backbone(str(path), dtype=dtype, attn_implementation=cfg.attn_implementation,
                                        cache_dir=cache / "backbones")
    return path, backbone, tokenizer


def context_bank_for(model, collator, splits: dict[str, list], *, dataset: str, cache: Path):
    """The suffix order's :class:`~mscrs_core.models.context_states.ContextStateBank`, filled for every split.

    One file per split under ``cache/context-states``, named by backbone, dataset, split and context length
    (:func:`~mscrs_core.models.context_states.bank_path`): a later run with the same keys loads it instead
    of running the backbone over the contexts again, and a change of any key computes a new file.
    """
    from ...models.context_states import ContextStateBank, bank_path

    bank = ContextStateBank(model.backbone, collator.max_length, model.tokenizer.pad_token_id)
    folder = cache / "context-states"
    for split, samples in splits.items():
        path = bank_path(folder, model.backbone, dataset, split, collator.max_length)
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
