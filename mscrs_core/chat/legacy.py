"""Reading chat checkpoints of the previous format, ``mscrs-chat/1`` (written before ``save_pretrained``).

Folder: ``config.json`` (format tag, backbone source, graph/recommender/generator configs), ``tokenizer/``,
``backbone/`` (when saved), ``graphs.pt``, ``entities.json``, ``generator.pt``, ``context_bank.pt`` and
``recommender.pt``. Every ``.pt`` file is read with ``torch.load(weights_only=True)``. New checkpoints are
written by :func:`mscrs_core.chat.checkpoint.save_chat_checkpoint` in the current format; this module only reads
(:func:`~mscrs_core.chat.checkpoint.load_chat_checkpoint` calls :func:`load_legacy_models` for such a folder).
"""
from __future__ import annotations

from pathlib import Path

import torch


def _load_pt(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/garbage files
        raise ValueError(f"{path}: corrupt or unreadable checkpoint file ({type(err).__name__}: {err})") from None


def _load_state(model, path: Path) -> None:
    try:
        model.load_trainable_state_dict(_load_pt(path))
    except (RuntimeError, ValueError) as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: the weights do not fit the model its config.json describes ({err}); the checkpoint "
                         "is older than this version: export it again (chapter 08_talk, or "
                         "mscrs_core.experiments.chat_export.export_chat)") from None


def load_legacy_models(d: Path, cfg: dict, device: str = "cpu"):
    """(generator, recommender or None) of an ``mscrs-chat/1`` folder ``d`` whose config.json is ``cfg``."""
    from mscrs_core.graphs.fusion import GraphConfig
    from mscrs_core.graphs.inputs import GraphInputs
    from mscrs_core.models.backbone import freeze, load_backbone
    from mscrs_core.models.context_mapping import ContextBank, make_text_embedder
    from mscrs_core.models.conversation import ConversationConfig, MSCRSGenerator
    from mscrs_core.models.pretrained import load_tokenizer
    from mscrs_core.models.recommender import MSCRSRecommender, RecommenderConfig

    graphs = GraphInputs(**_load_pt(d / "graphs.pt"))
    _load_pt(d / "generator.pt")  # a missing or damaged file is reported before the backbone is loaded
    try:
        if not (d / "tokenizer").is_dir():
            raise FileNotFoundError(f"{d / 'tokenizer'}: missing tokenizer folder")
        tokenizer = load_tokenizer(d / "tokenizer")
        b = cfg["backbone"]
        dtype = getattr(torch, b.get("dtype") or "float32", None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{d / 'config.json'}: backbone dtype {b.get('dtype')!r} is not a torch dtype")
        kw = {"dtype": dtype, "attn_implementation": b.get("attn_implementation") or None}
        if b.get("saved"):
            if not (d / "backbone").is_dir():
                raise FileNotFoundError(f"{d / 'backbone'}: missing backbone folder")
            backbone, _ = load_backbone(str(d / "backbone"), **kw)
        else:
            from mscrs_core.data.files import project_root

            backbone, _ = load_backbone(b["source"], gguf_file=b.get("gguf_file"),
                                        cache_dir=project_root() / "cache" / "backbones", **kw)
        freeze(backbone.to(device))
        gconf = ConversationConfig.from_dict(cfg["generator"])
        bank = embedder = None
        if gconf.use_context_mapping:
            bank = ContextBank.from_state(_load_pt(d / "context_bank.pt"))
            embedder = make_text_embedder(gconf.text_embedder)
        gen_graph = graphs.encoder(GraphConfig(**cfg["generator_graph_config"]))
        generator = MSCRSGenerator(gen_graph, backbone, tokenizer, gconf, bank=bank, embedder=embedder)
        _load_state(generator, d / "generator.pt")
        generator.to(device).eval()
        recommender = None
        if cfg.get("recommender"):
            rc = dict(cfg["recommender"])
            if "config" not in rc:
                raise ValueError(f"{d / 'config.json'}: a chat checkpoint written before RecommenderConfig existed; "
                                 "export it again (chapter 08_talk, or mscrs_core.experiments.chat_export.export_chat)")
            rec_graph = graphs.encoder(GraphConfig(**rc.pop("graph_config")))
            recommender = MSCRSRecommender(rec_graph, backbone, graphs.item_ids, tokenizer=tokenizer,
                                           config=RecommenderConfig.from_dict(rc["config"]))
            _load_state(recommender, d / "recommender.pt")
            if not rc.get("lm_path", True):  # validation kept the warm-up's weights: scored without the LM
                recommender.close_lm_path()
            recommender.to(device).eval()
    except (KeyError, TypeError) as err:
        raise ValueError(f"{d / 'config.json'}: corrupt chat checkpoint config ({type(err).__name__}: {err})") from None
    return generator, recommender
