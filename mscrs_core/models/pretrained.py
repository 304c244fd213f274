"""``save_pretrained`` / ``from_pretrained`` for the models that sit on a frozen backbone (Hugging Face style).

A saved model is one folder::

    config.json          model_type, the model's config dataclass (RecommenderConfig / ConversationConfig), how to
                         rebuild the graph encoder, the backbone's name/path, dtype and attention implementation,
                         and what the model needs besides (the recommender's item ids, ...)
    model.safetensors    the trainable (non-backbone) weights: ``model.trainable_state_dict()``
    graphs.safetensors   the graph structure of a SemanticGraphEncoder (:class:`~mscrs_core.graphs.inputs.GraphInputs`)
    tokenizer/           the tokenizer the model was built with (the conversation model's holds ``<movie>``)
    ...                  model-specific files (the conversation model's context bank, Eq. 26)

The frozen backbone is never saved: :meth:`PretrainedMixin.from_pretrained` loads it by its recorded name or
folder through :func:`~mscrs_core.models.backbone.load_backbone` (a relative path starting with ``.`` is
resolved against the model's folder), in the recorded dtype; pass ``backbone=`` to share an already loaded one.
Nothing is unpickled: weights and graphs are safetensors, the rest is JSON.

A bad folder raises FileNotFoundError (a missing file) or ValueError (a corrupt file, an unknown config field,
a tensor of the wrong shape), each one line that names the file and what is wrong; the command line turns them
into one line and exit code 2.
"""
from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mscrs_core.models.attention import GROUPED_EAGER

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
GRAPHS_NAME = "graphs.safetensors"
TOKENIZER_DIR = "tokenizer"
FORMAT_VERSION = 1
TOP_LEVEL_KEYS = ("model_type", "format_version", "config", "graph_encoder", "backbone", "tokenizer", "extras")


# ------------------------------------------------------------------------------------------ files


def write_json(path: Path, data: dict) -> Path:
    from mscrs_core.atomic import atomic_write_text

    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path, what: str = "file") -> dict:
    """A JSON object from ``path``; FileNotFoundError / ValueError naming the path otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: corrupt {what} (not valid JSON: {err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: corrupt {what} (expected a JSON object, found {type(data).__name__})")
    return data


def write_safetensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """``tensors`` (each copied to its own CPU storage, as safetensors requires) into ``path``, atomically."""
    from safetensors.torch import save

    from mscrs_core.atomic import atomic_write

    data = save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, metadata=metadata)
    return atomic_write(path, lambda f: f.write(data), binary=True)


def read_safetensors(path: Path, what: str = "weights file") -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; FileNotFoundError / ValueError naming the path otherwise."""
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing {what}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises SafetensorError / OSError / ValueError for damaged files
        msg = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"{path}: corrupt {what} (not a readable safetensors file: {msg})") from None
    return tensors, meta


def with_current_names(config_class: type, data: dict, where: Any) -> dict:
    """``data`` with each key that ``config_class.FORMER_NAMES`` lists (former field name -> current name) renamed,
    so that a config saved before a field was renamed still loads; a key given under both names is an error
    naming ``where``."""
    former = getattr(config_class, "FORMER_NAMES", {})
    out: dict = {}
    for k, v in data.items():
        name = former.get(k, k)
        if name != k and name in data:
            raise ValueError(f"{where}: field {name!r} given twice (also under its former name {k!r})")
        out[name] = v
    return out


def config_from_dict(config_class: type, data: Any, path: Path):
    """``config_class`` from the ``config`` entry of ``path``; unknown fields and bad values name the file.
    Fields saved under a former name (``config_class.FORMER_NAMES``) are renamed."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: 'config' must be a JSON object, found {type(data).__name__}")
    data = with_current_names(config_class, data, f"{path}: {config_class.__name__}")
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown {config_class.__name__} fields {unknown} (written by another version "
                         f"of mscrs_core? known: {sorted(known)})")
    try:
        return config_class(**data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: bad {config_class.__name__} value ({err})") from None


def load_weights_into(model, tensors: dict[str, Tensor], path: Path) -> None:
    """``model.load_trainable_state_dict(tensors)`` after checking names and shapes against the built model."""
    expected = model.trainable_state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path}: the weights do not fit the model built from {CONFIG_NAME} (missing tensors "
                         f"{missing[:5]}, unexpected tensors {unexpected[:5]})")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise ValueError(f"{path}: tensor {k!r} has shape {tuple(tensors[k].shape)}, the model built from "
                             f"{CONFIG_NAME} expects {tuple(v.shape)}")
    model.load_trainable_state_dict(tensors)


# ------------------------------------------------------------------------------------------ graph encoder


def graph_encoder_record(encoder, directory: Path, graphs=None) -> dict:
    """Write what rebuilds ``encoder`` (its graphs, for a SemanticGraphEncoder) and return its config.json entry."""
    from dataclasses import asdict

    from mscrs_core.graphs.fusion import SemanticGraphEncoder
    from mscrs_core.models.entity_table import EntityTable

    if isinstance(encoder, SemanticGraphEncoder):
        inputs = graphs if graphs is not None else getattr(encoder, "graph_inputs", None)
        if inputs is None:
            raise ValueError("save_pretrained: the graph encoder does not know its graphs; pass graphs= "
                             "(a mscrs_core.graphs.inputs.GraphInputs)")
        inputs.save(directory / GRAPHS_NAME)
        return {"class": "SemanticGraphEncoder", "config": asdict(encoder.config), "file": GRAPHS_NAME}
    if isinstance(encoder, EntityTable):
        n, d = encoder.emb.weight.shape
        return {"class": "EntityTable", "num_entities": int(n), "dim": int(d)}
    raise ValueError(f"save_pretrained: cannot record a graph encoder of type {type(encoder).__name__} "
                     "(SemanticGraphEncoder and EntityTable are supported)")


def build_graph_encoder(record: Any, directory: Path):
    """Inverse of :func:`graph_encoder_record` (fresh weights; the model's weights file fills them)."""
    from mscrs_core.graphs.fusion import GraphConfig
    from mscrs_core.graphs.inputs import GraphInputs
    from mscrs_core.models.entity_table import EntityTable

    path = directory / CONFIG_NAME
    kind = record.get("class") if isinstance(record, dict) else None
    try:
        if kind == "SemanticGraphEncoder":
            gconf = config_from_dict(GraphConfig, record["config"], path)
            return GraphInputs.load(directory / record.get("file", GRAPHS_NAME)).encoder(gconf)
        if kind == "EntityTable":
            return EntityTable(int(record["num_entities"]), int(record["dim"]))
    except KeyError as err:
        raise ValueError(f"{path}: graph_encoder entry lacks {err}") from None
    raise ValueError(f"{path}: unknown graph_encoder {record!r} (expected class SemanticGraphEncoder or EntityTable)")


# ------------------------------------------------------------------------------------------ backbone


def backbone_record(backbone, source: str | None, gguf_file: str | None, attn_implementation: str | None) -> dict:
    """The config.json entry that reloads ``backbone``: name/path, GGUF file, dtype, attention implementation."""
    source = source or getattr(backbone, "name_or_path", "") or None
    if not source:
        raise ValueError("save_pretrained: the frozen backbone is loaded by name, never saved; pass backbone_source= "
                         "(a name or folder mscrs_core.models.backbone.load_backbone accepts)")
    attn = attn_implementation or getattr(getattr(backbone, "config", None), "_attn_implementation", None)
    if attn == GROUPED_EAGER:  # recorded as what it computes: a reload asks for eager and gets it back grouped
        attn = "eager"
    return {"name_or_path": str(source), "gguf_file": gguf_file,
            "dtype": str(next(backbone.parameters()).dtype).removeprefix("torch."),
            "attn_implementation": attn if isinstance(attn, str) else None}


def load_recorded_backbone(record: Any, directory: Path, cache_dir: str | os.PathLike | None = None):
    """(model, tokenizer) of a :func:`backbone_record` entry; the name is looked up offline like every backbone."""
    from mscrs_core.models.backbone import load_backbone

    path = directory / CONFIG_NAME
    if not isinstance(record, dict) or not isinstance(record.get("name_or_path"), str):
        raise ValueError(f"{path}: the backbone entry needs a 'name_or_path' string, found {record!r}")
    dtype = getattr(torch, str(record.get("dtype") or "float32"), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{path}: backbone dtype {record.get('dtype')!r} is not a torch dtype")
    source = record["name_or_path"]
    if source.startswith("."):  # relative to the model's folder (e.g. a chat checkpoint's ../backbone)
        source = str((directory / source).resolve())
    if cache_dir is None:  # a GGUF backbone (e.g. "smollm2-135m") is converted once there, as the runs do
        from mscrs_core.data.files import project_root

        cache_dir = project_root() / "cache" / "backbones"
    return load_backbone(source, gguf_file=record.get("gguf_file"), dtype=dtype,
                         attn_implementation=record.get("attn_implementation") or None, cache_dir=cache_dir)


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder}: unreadable tokenizer folder ({type(err).__name__}: {err})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ------------------------------------------------------------------------------------------ the mixin


class PretrainedMixin:
    """``save_pretrained(dir)`` / ``from_pretrained(dir)`` (see the module docstring).

    A model class sets :attr:`model_type` and :attr:`config_class` (a dataclass with ``to_dict``) and implements
    :meth:`_pretrained_extras` (JSON data it needs besides its config), :meth:`_save_pretrained_files` (other
    files) and :meth:`_build_pretrained` (the untrained model from the rebuilt parts).
    """

    model_type: str
    config_class: type

    # ------------------------------------------------------------------ hooks
    def _pretrained_extras(self) -> dict:
        return {}

    def _save_pretrained_files(self, directory: Path) -> None:
        return None

    @classmethod
    def _build_pretrained(cls, directory: Path, config, graph_encoder, backbone, tokenizer, extras: dict, **kwargs):
        raise NotImplementedError

    # ------------------------------------------------------------------ save
    def save_pretrained(self, directory: str | os.PathLike, *, backbone_source: str | None = None,
                        gguf_file: str | None = None, attn_implementation: str | None = None,
                        graphs=None) -> Path:
        """Write the model into ``directory`` (created if needed); returns it.

        ``backbone_source``: the name or folder the backbone is reloaded from (default: the backbone's own
        ``name_or_path``, i.e. where it was loaded from); ``gguf_file``: the GGUF file inside it, if any;
        ``attn_implementation``: recorded for the reload (default: the backbone's current one). ``graphs``: a
        :class:`~mscrs_core.graphs.inputs.GraphInputs` to record instead of the one the graph encoder keeps.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        record = {
            "model_type": self.model_type,
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "graph_encoder": graph_encoder_record(self.graph_encoder, d, graphs),
            "backbone": backbone_record(self.backbone, backbone_source, gguf_file, attn_implementation),
            "tokenizer": None,
            "extras": self._pretrained_extras(),
        }
        if getattr(self, "tokenizer", None) is not None:
            self.tokenizer.save_pretrained(str(d / TOKENIZER_DIR))
            record["tokenizer"] = TOKENIZER_DIR
        self._save_pretrained_files(d)
        write_safetensors(self.trainable_state_dict(), d / WEIGHTS_NAME,
                          metadata={"format": "pt", "model_type": self.model_type})
        write_json(d / CONFIG_NAME, record)  # last: a folder with config.json is complete
        return d

    # ------------------------------------------------------------------ load
    @classmethod
    def read_pretrained_config(cls, directory: str | os.PathLike) -> dict:
        """The checked ``config.json`` of a folder written by :meth:`save_pretrained` for this class."""
        d = Path(directory)
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: model folder not found (write one with save_pretrained)")
        path = d / CONFIG_NAME
        record = read_json(path, f"{CONFIG_NAME} (not a save_pretrained folder?)")
        if record.get("model_type") != cls.model_type:
            raise ValueError(f"{path}: holds model_type {record.get('model_type')!r}, expected {cls.model_type!r} "
                             f"({cls.__name__}.from_pretrained)")
        if record.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {record.get('format_version')!r} is not supported "
                             f"(this version reads {FORMAT_VERSION}); save the model again")
        unknown = sorted(set(record) - set(TOP_LEVEL_KEYS))
        if unknown:
            raise ValueError(f"{path}: unknown entries {unknown} (known: {list(TOP_LEVEL_KEYS)})")
        if not isinstance(record.get("extras", {}), dict):
            raise ValueError(f"{path}: 'extras' must be a JSON object")
        return record

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, backbone=None, tokenizer=None, device: str = "cpu",
                        cache_dir: str | os.PathLike | None = None, **kwargs):
        """Rebuild the model :meth:`save_pretrained` wrote into ``directory``, in eval mode on ``device``.

        ``backbone``: an already loaded frozen backbone to use (two models sharing one); default: loaded by the
        recorded name/path and dtype. ``tokenizer``: default the saved one, else the backbone's.
        ``cache_dir``: where a GGUF backbone is converted once (default ``cache/backbones`` of the project).
        Other keyword arguments go to the model class's builder (e.g. the conversation model's ``embedder``).
        """
        from mscrs_core.models.backbone import freeze

        d = Path(directory)
        record = cls.read_pretrained_config(d)
        config = config_from_dict(cls.config_class, record.get("config"), d / CONFIG_NAME)
        tensors, _ = read_safetensors(d / WEIGHTS_NAME)
        graph_encoder = build_graph_encoder(record.get("graph_encoder"), d)
        backbone_tokenizer = None
        if backbone is None:
            backbone, backbone_tokenizer = load_recorded_backbone(record.get("backbone"), d, cache_dir)
        freeze(backbone.to(device))
        if tokenizer is None:
            if record.get("tokenizer"):
                tok_dir = d / str(record["tokenizer"])
                if not tok_dir.is_dir():
                    raise FileNotFoundError(f"{tok_dir}: missing tokenizer folder (named in {d / CONFIG_NAME})")
                tokenizer = load_tokenizer(tok_dir)
            else:
                tokenizer = backbone_tokenizer
        model = cls._build_pretrained(d, config, graph_encoder, backbone, tokenizer, dict(record.get("extras") or {}),
                                      **kwargs)
        load_weights_into(model, tensors, d / WEIGHTS_NAME)
        return model.to(device).eval()
