"""A ``mscrs chat`` checkpoint from two finished runs: a recommendation run and a conversation run.

:func:`export_chat` rebuilds the recommender of a :class:`~.recommendation.RecRunConfig` run and the
generator of a :class:`~.conversation.ConversationRunConfig` run on one set of graphs, loads the weights each
run selected on validation (``<run>/rec/best.pt``, ``<run>/train/best.pt``) and writes them with
:func:`~mscrs_core.chat.save_chat_checkpoint` (each model through its ``save_pretrained``: config, weights,
graphs and tokenizer; the backbone by name). The "Talk to it" chapter and ``mscrs chat`` load that folder;
nothing is trained here.
"""
from __future__ import annotations

import json

import os
from pathlib import Path

from ..data.files import project_root
from .conversation import ConversationRunConfig, build_generator, conversation_splits, load_conversation_backbone
from .fingerprint import read_result
from .recommendation import RecRunConfig, build_recommender, default_results_dir, graph_settings


def _best_weights(run_dir: Path, sub: str, what: str) -> dict:
    from ..training.checkpoint import load_checkpoint

    if not (run_dir / "result.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no finished {what} run here (execute it first, e.g. with its chapter)")
    path = run_dir / sub / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the {what} run finished but its selected weights are missing")
    return load_checkpoint(path)["model"]


def export_chat(rec: RecRunConfig, conversation: ConversationRunConfig, out_dir: str | os.PathLike, *,
                results_dir: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None) -> Path:
    """Write a chat checkpoint for the finished runs ``rec`` and ``conversation`` into ``out_dir``; returns it.

    Both runs must use the same dataset, backbone and ``k`` (one set of graphs serves both models).
    """
    from ..chat import save_chat_checkpoint
    from ..data import load_dataset
    from ..graphs.assemble import build_dataset_graphs

    if rec.model not in ("mscrs", "unicrs") or conversation.model != "mscrs":
        raise ValueError("export_chat: needs a prompt recommender ('mscrs'/'unicrs') and an 'mscrs' generator run")
    for field in ("dataset", "backbone", "backbone_epochs", "k", "backbone_dtype"):
        if getattr(rec, field, None) != getattr(conversation, field, None):
            raise ValueError(f"export_chat: the runs differ in {field} ({getattr(rec, field)!r} vs "
                             f"{getattr(conversation, field)!r}); both models must share one backbone and one set "
                             "of graphs")
    if rec.graph_variant != "paper" or rec.comention_threshold != 1:
        raise ValueError("export_chat: the recommender run must use the default graphs (graph_variant='paper', "
                         "comention_threshold=1) that conversation runs use")
    results = Path(results_dir) if results_dir else default_results_dir()
    # the stage validation kept (recommendation.run_recommendation): the LM stage, or the warm-up without the LM
    rec_result = read_result(results / rec.name() / "result.json") \
        if (results / rec.name() / "result.json").is_file() else {}  # a damaged file: an error naming it
    warm_kept = rec_result.get("selected_stage", "rec") != "rec"
    rec_state = _best_weights(results / rec.name(), "warm" if warm_kept else "rec", "recommendation")
    gen_state = _best_weights(results / conversation.name(), "train", "conversation")
    cache = Path(cache_dir) if cache_dir else project_root() / "cache"
    ds = load_dataset(rec.dataset, data_root)
    graphs = build_dataset_graphs(ds, graph_settings(rec.k, cache_dir=cache), data_root)
    # the conversation run's backbone (dtype, attention) serves both models; a named backbone (e.g.
    # "smollm2-135m") is recorded by name, the miniature DialoGPT is saved into the checkpoint
    backbone, tokenizer = load_conversation_backbone(conversation, ds, cache)
    recommender = build_recommender(rec, ds, graphs, backbone, tokenizer)
    recommender.load_trainable_state_dict(rec_state)
    if warm_kept:
        recommender.close_lm_path()
    train, _, _ = conversation_splits(conversation, ds)
    generator = build_generator(conversation, ds, graphs, backbone, tokenizer, train, cache)
    generator.load_trainable_state_dict(gen_state)
    # both graph encoders were built from ``graphs`` and record them; each model is written by save_pretrained
    return save_chat_checkpoint(out_dir, generator=generator, dataset=ds, recommender=recommender.eval(),
                                backbone_source=None if conversation.backbone == "tiny-dialogpt"
                                else conversation.backbone,
                                attn_implementation=conversation.attn_implementation or None)
