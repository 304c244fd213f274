"""Chat checkpoints: :func:`save_chat_checkpoint` writes one, :func:`load_chat_checkpoint` reads it into a
:class:`ChatBundle`.

Checkpoint folder::

    config.json          format tag, dataset name, the two model folders' names
    generator/           the conversation model (Eq. 25-29): ``MSCRSGenerator.save_pretrained``
    recommender/         the recommender (Eq. 17-24): ``MSCRSRecommender.save_pretrained``, optional
    entities.json        entity2id and entity names (for linking and display)
    backbone/            the frozen backbone, only when no loadable source name/path was given (the model
                         folders then name it as ``../backbone``)

Each model folder is a :mod:`~mscrs_core.models.pretrained` folder (``config.json`` + ``model.safetensors`` +
``graphs.safetensors`` (the :class:`~mscrs_core.graphs.inputs.GraphInputs` the graph encoder is rebuilt from) +
``tokenizer/``); the backbone is loaded once, by the generator's recorded name, dtype and attention
implementation, and shared with the recommender. Nothing is unpickled. A missing folder/file raises
FileNotFoundError, an unreadable one ValueError; both name the path. Checkpoints of the previous format
(``mscrs-chat/1``) still load, through :mod:`.legacy`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mscrs_core.graphs.inputs import GraphInputs  # what the graph encoders are built from (re-exported by the package)
from mscrs_core.models.pretrained import read_json

FORMAT = "mscrs-chat/2"
LEGACY_FORMAT = "mscrs-chat/1"
GENERATOR_DIR, RECOMMENDER_DIR, BACKBONE_DIR = "generator", "recommender", "backbone"


def save_chat_checkpoint(directory: str | Path, *, generator, dataset, graphs: GraphInputs | None = None,
                         recommender=None, backbone_source: str | None = None, gguf_file: str | None = None,
                         attn_implementation: str | None = None) -> Path:
    """Write everything ``mscrs chat`` needs into ``directory`` (see the module docstring).

    ``backbone_source``: a name/path :func:`~mscrs_core.models.backbone.load_backbone` can load later (e.g.
    ``"smollm2-135m"``: its GGUF is converted once under the project's ``cache/backbones``); ``None`` saves the
    (frozen, placeholder-resized) backbone itself into ``backbone/``. The backbone's dtype (e.g. bf16) and
    attention implementation are recorded and restored on load. ``graphs``: the graph structure to record
    (default: the one each model's graph encoder was built from).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if backbone_source is None:
        generator.sync_placeholder()
        generator.backbone.save_pretrained(d / BACKBONE_DIR)
        generator.tokenizer.save_pretrained(d / BACKBONE_DIR)
        backbone_source = f"../{BACKBONE_DIR}"
    kw = dict(backbone_source=backbone_source, gguf_file=gguf_file, attn_implementation=attn_implementation,
              graphs=graphs)
    generator.save_pretrained(d / GENERATOR_DIR, **kw)
    if recommender is not None:
        recommender.save_pretrained(d / RECOMMENDER_DIR, **kw)
    (d / "entities.json").write_text(json.dumps({
        "entity2id": dataset.entity2id, "item_ids": list(dataset.item_ids),
        "entity_names": {str(k): v for k, v in dataset.entity_names.items()}}), encoding="utf-8")
    (d / "config.json").write_text(json.dumps({
        "format": FORMAT, "dataset": dataset.name, "generator": GENERATOR_DIR,
        "recommender": RECOMMENDER_DIR if recommender is not None else None}, indent=2), encoding="utf-8")
    return d


@dataclass
class ChatBundle:
    """Everything loaded from a chat checkpoint."""

    directory: Path
    config: dict
    generator: object
    recommender: object | None
    entity2id: dict[str, int]
    entity_names: dict[int, str]
    item_ids: list[int]

    def name_of(self, entity: int) -> str:
        return self.entity_names.get(int(entity), str(entity))


def load_chat_checkpoint(directory: str | Path, device: str = "cpu") -> ChatBundle:
    """Rebuild the generator (and recommender, when saved) from :func:`save_chat_checkpoint`'s folder."""
    from mscrs_core.models.conversation import MSCRSGenerator
    from mscrs_core.models.recommender import MSCRSRecommender

    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: chat checkpoint folder not found (write one with save_chat_checkpoint)")
    cfg = read_json(d / "config.json", "checkpoint file")
    ents = read_json(d / "entities.json", "checkpoint file")
    if cfg.get("format") == LEGACY_FORMAT:
        from mscrs_core.chat.legacy import load_legacy_models

        generator, recommender = load_legacy_models(d, cfg, device)
    elif cfg.get("format") == FORMAT:
        for key in ("generator", "recommender"):
            if cfg.get(key) is not None and not isinstance(cfg.get(key), str):
                raise ValueError(f"{d / 'config.json'}: corrupt chat checkpoint config ({key!r} must name a folder)")
        if not cfg.get("generator"):
            raise ValueError(f"{d / 'config.json'}: corrupt chat checkpoint config (no generator folder named)")
        generator = MSCRSGenerator.from_pretrained(d / cfg["generator"], device=device)
        recommender = None
        if cfg.get("recommender"):  # one backbone (and the generator's tokenizer, with <movie>) serves both
            recommender = MSCRSRecommender.from_pretrained(d / cfg["recommender"], backbone=generator.backbone,
                                                           tokenizer=generator.tokenizer, device=device)
    else:
        raise ValueError(f"{d / 'config.json'}: not a chat checkpoint (format {cfg.get('format')!r}, "
                         f"expected {FORMAT!r})")
    try:
        return ChatBundle(d, cfg, generator, recommender, dict(ents["entity2id"]),
                          {int(k): v for k, v in ents.get("entity_names", {}).items()}, list(ents["item_ids"]))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{d / 'entities.json'}: corrupt checkpoint file ({type(err).__name__}: {err})") from None
