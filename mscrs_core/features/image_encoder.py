"""Eq. (4)-(5): image features of items.

Eq. (4): each still ``m_j^v`` of item ``i`` goes through a pre-trained vision encoder (ViT in the
paper; its 1024-d features suggest ViT-Large) -> ``z_j^v``. Eq. (5): ``x_i^v = (1/l) sum_j z_j^v``.

Images live in ``<root>/<item>/<n>.jpg`` (``.jpeg``, ``.png``, ``.webp``, ``.bmp`` too; other files
and hidden files are ignored). A corrupt or unreadable image, an empty item folder, or a requested
item without a folder is *reported* in :attr:`ImageFeatures.problems`, never fatal; items left without
any readable image get a zero row and ``has_image = False`` so the image semantic graph can leave
them out.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..offline import OfflineModelError, pretrained_source

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
PAPER_IMAGE_ENCODER = "google/vit-large-patch16-224-in21k"  # a 1024-d ViT, as the paper's feature size implies
POOLINGS = ("auto", "pooler", "cls", "mean")


@dataclass(frozen=True)
class ImageProblem:
    """An image (or an item's whole folder, ``file=None``) that gave no feature, and why."""

    item: str
    file: str | None
    reason: str


@dataclass
class ImageFeatures:
    """Eq. (5) per item: ``features`` [N, d] (zero rows where ``has_image`` is False), in ``keys`` order."""

    keys: list[str]
    features: torch.Tensor
    has_image: torch.Tensor  # bool [N]
    num_images: torch.Tensor  # long [N], images that were read and encoded
    problems: list[ImageProblem] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    def summary(self) -> str:
        return (f"{int(self.has_image.sum())}/{len(self.keys)} items with images, "
                f"{int(self.num_images.sum())} images encoded, {len(self.problems)} problems")


def _natural_key(name: str) -> tuple:
    stem = Path(name).stem
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def list_item_images(root: str | os.PathLike, item_keys: Iterable[str] | None = None
                     ) -> tuple[dict[str, list[Path]], list[ImageProblem]]:
    """``{item: [image paths in numeric order]}`` under ``root`` plus problems (no folder, no images).

    ``item_keys`` fixes which items (and their order); by default every sub-folder, numeric names first.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image root folder not found (expected <root>/<item>/<n>.jpg)")
    if item_keys is None:
        keys = sorted((p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural_key)
    else:
        keys = [str(k) for k in item_keys]
    out: dict[str, list[Path]] = {}
    problems: list[ImageProblem] = []
    for k in keys:
        folder = root / k
        if not folder.is_dir():
            problems.append(ImageProblem(k, None, f"no folder {folder}"))
            out[k] = []
            continue
        files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                        and p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: _natural_key(p.name))
        if not files:
            problems.append(ImageProblem(k, None, f"folder {folder} holds no {'/'.join(IMAGE_EXTENSIONS)} images"))
        out[k] = files
    return out, problems


def load_image(path: str | os.PathLike):
    """The image as RGB, fully decoded (so truncation shows here); ``ValueError`` naming the file otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise ValueError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


class ImageEncoder:
    """Eq. (4)-(5) with any Hugging Face vision encoder (``AutoModel`` + ``AutoImageProcessor``).

    ``pooling``: ``"auto"`` (default) uses the model's ``pooler_output`` when it has one, else the
    CLS token; ``"pooler"``, ``"cls"`` (``last_hidden_state[:, 0]``) and ``"mean"`` (mean over all
    tokens / spatial positions) force a choice. Eval mode, ``no_grad``, deterministic.
    """

    def __init__(self, model_name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu",
                 batch_size: int = 16, pooling: str = "auto"):
        from transformers import AutoImageProcessor, AutoModel

        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name = str(model_name_or_path)
        try:
            src, kw = pretrained_source(model_name_or_path, what="image encoder")  # offline unless MSCRS_ALLOW_DOWNLOADS=1
            self.processor = AutoImageProcessor.from_pretrained(src, **kw)
            self.model = AutoModel.from_pretrained(src, **kw)
        except OfflineModelError as e:  # fails at once: no request was made
            raise OfflineModelError(f"could not load the image encoder {self.name!r}: {e}") from None
        except (OSError, ValueError) as e:
            raise OSError(f"could not load the image encoder {self.name!r} with AutoImageProcessor/AutoModel: {e}. "
                          "Pass a local folder, or a hub name in the local Hugging Face cache "
                          "(or set MSCRS_ALLOW_DOWNLOADS=1 to download it).") from e
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.pooling = pooling
        self._dim: int | None = None

    def __repr__(self) -> str:
        return f"ImageEncoder({self.name!r}, pooling={self.pooling!r})"

    @property
    def dim(self) -> int:
        if self._dim is None:
            from PIL import Image
            self._dim = int(self.encode_images([Image.new("RGB", (32, 32))]).shape[1])
        return self._dim

    def _pool(self, out) -> torch.Tensor:
        pooled = getattr(out, "pooler_output", None)
        if self.pooling == "pooler" or (self.pooling == "auto" and pooled is not None):
            if pooled is None:
                raise ValueError(f"{self.name}: the model has no pooler_output; use pooling='cls' or 'mean'")
            return pooled.flatten(1)
        h = out.last_hidden_state
        if h.ndim == 4:  # convolutional backbones: [B, C, H, W]
            return h.mean(dim=(2, 3))
        return h[:, 0] if self.pooling in ("cls", "auto") else h.mean(dim=1)

    @torch.no_grad()
    def encode_images(self, images: Sequence) -> torch.Tensor:
        """Eq. (4): one feature per PIL image, float32 [n, d] on CPU."""
        out = []
        for s in range(0, len(images), self.batch_size):
            batch = self.processor(images=list(images[s:s + self.batch_size]), return_tensors="pt")
            pixel_values = batch["pixel_values"].to(self.device)
            out.append(self._pool(self.model(pixel_values=pixel_values)).float().cpu())
        if not out:
            raise ValueError("encode_images needs at least one image")
        feats = torch.cat(out)
        self._dim = int(feats.shape[1])
        return feats

    def encode_folder(self, root: str | os.PathLike, item_keys: Iterable[str] | None = None) -> ImageFeatures:
        """Eq. (4)-(5) for every item under ``root`` (or for ``item_keys``): mean of its images' features."""
        listing, problems = list_item_images(root, item_keys)
        keys = list(listing)
        rows: list[torch.Tensor | None] = []
        counts: list[int] = []
        for k in keys:
            images = []
            for p in listing[k]:
                try:
                    images.append(load_image(p))
                except ValueError as e:
                    problems.append(ImageProblem(k, str(p), str(e)))
            if images:
                rows.append(self.encode_images(images).mean(dim=0))  # Eq. (5)
            else:
                rows.append(None)
                if listing[k]:  # it had files, all unreadable
                    problems.append(ImageProblem(k, None, "no readable image"))
            counts.append(len(images))
        d = next((r.shape[0] for r in rows if r is not None), None) or self.dim
        feats = torch.zeros(len(keys), d)
        for i, r in enumerate(rows):
            if r is not None:
                feats[i] = r
        return ImageFeatures(keys=keys, features=feats, has_image=torch.tensor([c > 0 for c in counts], dtype=torch.bool),
                             num_images=torch.tensor(counts, dtype=torch.long), problems=problems,
                             meta={"encoder": self.name, "pooling": self.pooling, "root": str(root)})
