"""What the frozen language model itself expects to be recommended: its next-token distribution after a textual cue,
read out on the items' titles (beyond the paper; chapter 3 names it).

Eq. (20)-(23) read the language model through one hidden state mapped by a trained projection into the graph's
entity space. On INSPIRED's 2,065 training samples that projection never learns what the backbone knows about
movies (validation keeps the warm-up, which has no language model, in every run of chapter 4). The backbone's own
output layer already maps a hidden state onto its vocabulary, and titles are words. So, after the dialog context
``s`` the backbone reads a fixed cue ``c`` (``'System: I think you would like the movie "'``), and item i scores

    t_i(s) = mean_{w in title(i)} log p(w | s, c)  -  mean_{w in title(i)} log p(w | c)

(the mean log-probability of the title's tokens as the next token, a bag-of-tokens readout, minus the same without a
dialog: a pointwise mutual information, so that titles the backbone likes everywhere gain nothing). The recommender
adds ``gamma * t_i(s)`` to its logits (Eq. 23), ``gamma`` learned from zero: the untrained model is unchanged.

Nothing here is trained: ``t(s)`` is computed once per context without gradient (after the cached context states
in the ``suffix`` order, one pass over ``[s; c]`` otherwise), kept per context and, for a run's splits, written to
one file under ``cache/title-readout`` keyed by everything it depends on (:func:`readout_file`).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from mscrs_core.core_share import borrowed_cores, follow_share
from mscrs_core.models.backbone import decoder_of

#: The cue after the context, in the collators' ``"User: ...<eos>System: ...<eos>"`` format: the recommender's turn
#: begins and a quoted title is about to follow.
DEFAULT_CUE = 'System: I think you would like the movie "'
#: Title tokens read (a long title's first ones carry it).
MAX_TITLE_TOKENS = 8


def item_title(name: str) -> str:
    """An item's title from its entity name: DBpedia's trailing disambiguation removed
    (``"Split (2016 American film)"`` -> ``"Split"``)."""
    return re.sub(r"\s*\([^()]*\)\s*$", "", name).strip() or name.strip()


class TitleReadout:
    """``t(s)`` of the module docstring for a batch of left-padded contexts, memoised per context.

    Args:
        backbone: the frozen causal LM (its output embeddings score the title tokens).
        tokenizer: the backbone's tokenizer.
        titles: one title per item, in the item axis order.
        cue: the text read after the context.
    """

    def __init__(self, backbone: nn.Module, tokenizer, titles: Sequence[str], cue: str = DEFAULT_CUE,
                 max_title_tokens: int = MAX_TITLE_TOKENS):
        if not titles:
            raise ValueError("titles: expected one title per item, got none")
        if not cue:
            raise ValueError("cue: expected a non-empty text")
        self.backbone, self.titles, self.cue = backbone, list(titles), cue
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_title_tokens] for t in self.titles]
        ids = [x or [tokenizer.eos_token_id] for x in ids]
        width = max(len(x) for x in ids)
        self.title_index = torch.zeros(len(ids), width, dtype=torch.long)
        self.title_mask = torch.zeros(len(ids), width)
        for i, x in enumerate(ids):
            self.title_index[i, :len(x)] = torch.tensor(x)
            self.title_mask[i, :len(x)] = 1.0
        self.cue_ids = torch.tensor(tokenizer(cue, add_special_tokens=False)["input_ids"], dtype=torch.long)
        self._rows: dict[tuple[int, ...], Tensor] = {}
        self._prior: Tensor | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def digest(self) -> str:
        """What the values depend on besides the backbone and the contexts: cue and title tokens."""
        h = hashlib.sha256(json.dumps([self.cue_ids.tolist(), self.title_index.tolist(),
                                       self.title_mask.tolist()]).encode())
        return h.hexdigest()[:12]

    def title_logprobs(self, hidden: Tensor) -> Tensor:
        """[B, N]: mean log-probability of each title's tokens as the next token after ``hidden`` [B, H]."""
        head = self.backbone.get_output_embeddings()
        logp = torch.log_softmax(head(hidden.to(head.weight.dtype)).float(), dim=-1)
        index, mask = self.title_index.to(logp.device), self.title_mask.to(logp.device)
        return (logp[:, index] * mask).sum(-1) / mask.sum(-1)

    @torch.no_grad()
    def prior(self) -> Tensor:
        """[N]: the readout after the cue alone (no dialog)."""
        if self._prior is None:
            device = next(self.backbone.parameters()).device
            ids = self.cue_ids.unsqueeze(0).to(device)
            hidden = decoder_of(self.backbone)(input_ids=ids, use_cache=False).last_hidden_state[:, -1]
            self._prior = self.title_logprobs(hidden)[0].cpu()
        return self._prior

    @torch.no_grad()
    def compute(self, input_ids: Tensor, attention_mask: Tensor, bank=None) -> Tensor:
        """[B, N] ``t(s)`` of left-padded contexts, without the memo. ``bank``: a
        :class:`~mscrs_core.models.context_states.ContextStateBank` (the cue then runs after the cached states)."""
        from mscrs_core.models.context_states import run_after_context

        device = next(self.backbone.parameters()).device
        b = input_ids.shape[0]
        cue = self.cue_ids.to(device).unsqueeze(0).expand(b, -1)
        if bank is not None:
            states = bank.lookup(input_ids, attention_mask)
            embeds = self.backbone.get_input_embeddings()(cue)
            hidden = run_after_context(self.backbone, states, embeds)[:, -1]
        else:
            mask = torch.cat([attention_mask.to(device).long(), torch.ones_like(cue)], dim=1)
            positions = (mask.cumsum(1) - 1).clamp_min(0)
            hidden = decoder_of(self.backbone)(input_ids=torch.cat([input_ids.to(device), cue], dim=1),
                                               attention_mask=mask, position_ids=positions,
                                               use_cache=False).last_hidden_state[:, -1]
        return (self.title_logprobs(hidden) - self.prior().to(device)).cpu()

    @staticmethod
    def row_keys(input_ids: Tensor, attention_mask: Tensor) -> list[tuple[int, ...]]:
        return [tuple(int(t) for t, m in zip(ids, mask) if m) for ids, mask in zip(input_ids.tolist(),
                                                                                 attention_mask.tolist())]

    def lookup(self, input_ids: Tensor, attention_mask: Tensor, bank=None, batch_size: int = 64) -> Tensor:
        """[B, N] ``t(s)``: memoised contexts read back, the others computed (in chunks of ``batch_size``)."""
        keys = self.row_keys(input_ids, attention_mask)
        first: dict[tuple[int, ...], int] = {}
        for i, k in enumerate(keys):
            if k not in self._rows and k not in first:
                first[k] = i
        todo = list(first.values())
        with borrowed_cores():  # forward only: the same values on any number of threads
            for start in range(0, len(todo), batch_size):
                follow_share()
                idx = torch.tensor(todo[start:start + batch_size])
                ids, mask = input_ids[idx], attention_mask[idx]
                width = int(mask.sum(1).max())  # the chunk's own width: left padding beyond it is dropped
                values = self.compute(ids[:, -width:], mask[:, -width:], bank)
                for i, v in zip(idx.tolist(), values):
                    self._rows[keys[i]] = v.half()
        return torch.stack([self._rows[k] for k in keys]).float()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Every memoised context, as one safetensors file (atomically)."""
        from mscrs_core.models.pretrained import write_safetensors

        if not self._rows:
            raise ValueError("save: nothing computed yet")
        keys = list(self._rows)
        return write_safetensors({"values": torch.stack([self._rows[k] for k in keys])}, Path(path),
                                 {"rows": json.dumps([list(k) for k in keys]), "digest": self.digest()})

    def load(self, path: str | Path) -> bool:
        """Read a file of :meth:`save` into the memo; False when there is none. A file of other titles or another
        cue raises ValueError naming it."""
        from mscrs_core.models.pretrained import read_safetensors

        path = Path(path)
        if not path.is_file():
            return False
        tensors, meta = read_safetensors(path, "title readout file")
        if meta.get("digest") != self.digest():
            raise ValueError(f"{path}: title readout of other titles or another cue (digest {meta.get('digest')!r}, "
                             f"expected {self.digest()!r}); delete it to recompute")
        try:
            rows = [tuple(r) for r in json.loads(meta["rows"])]
            values = tensors["values"]
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path}: corrupt title readout file ({type(err).__name__}: {err})") from None
        if values.ndim != 2 or values.shape != (len(rows), len(self.titles)):
            raise ValueError(f"{path}: corrupt title readout file (values {tuple(values.shape)}, expected "
                             f"({len(rows)}, {len(self.titles)}))")
        self._rows.update(zip(rows, values))
        return True


def readout_file(folder: str | Path, backbone: nn.Module, readout: TitleReadout, dataset: str,
                 rows: Sequence[tuple[int, ...]]) -> Path:
    """The cache file of ``rows``' readouts: named by backbone, dataset, cue and titles, and the rows themselves."""
    from mscrs_core.models.context_states import backbone_fingerprint

    h = hashlib.sha256(json.dumps(sorted(list(r) for r in set(rows))).encode()).hexdigest()[:12]
    return Path(folder) / f"title-readout-{backbone_fingerprint(backbone)}-{dataset}-{readout.digest()}-{h}.safetensors"


def precompute_readout(readout: TitleReadout, collator, samples: Sequence, *, dataset: str, cache: Path,
                       bank=None) -> Path:
    """Fill ``readout`` for ``samples`` (through ``collator``) from its cache file, computing and writing the file
    when it is missing. Returns the file."""
    rows = [tuple(collator.token_ids(s)) for s in samples]
    path = readout_file(Path(cache) / "title-readout", readout.backbone, readout, dataset, rows)
    if readout.load(path):
        return path
    for start in range(0, len(samples), 256):
        batch = collator(list(samples[start:start + 256]))
        readout.lookup(batch["input_ids"], batch["attention_mask"], bank)
    path.parent.mkdir(parents=True, exist_ok=True)
    return readout.save(path)
