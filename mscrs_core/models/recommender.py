"""MSCRS prompt-learning recommender (paper Sec. 4.3, Eq. 17-24).

graph encoder (E_final, Eq. 16) -> prompt encoder (Eq. 17-18) -> frozen causal LM on [V_hat; O_rec; s] (Eq. 19)
-> last-token state (Eq. 20) -> linear map H -> d -> scores against E_final (Eq. 21 / Eq. 23).

Training scopes:
* ``task="pretrain"``: Eq. (21)-(22), softmax over ALL K entities, label = an entity of the turn.
* ``task="rec"`` with ``rec_scope="items"`` (default, the paper's Eq. 23-24): softmax over the N items only
  (rows ``item_ids`` of E_final), label = the gold item's position on the item axis.
* ``task="rec"`` with ``rec_scope="all_entities"`` (UniCRS's / the authors' code): softmax over all K entities
  in training; evaluation ranks items only either way (:meth:`score_items`).
Loss = CE + delta * L_fuse.

The graph side is any module whose ``forward()`` returns ``Tensor[K, d]`` (``SemanticGraphEncoder``; for the
UniCRS baseline / "w/o all graphs" the same module with every semantic graph switched off).

Paper vs. authors' code: the authors' ``rec/src/model_prompt.py`` (inherited from UniCRS) injects the prompt as
per-layer key/value prefixes (prefix tuning, with cross-attention between RoBERTa tokens and entities) and their
``train_rec_*``/``train_pre_*`` scripts contain no fusion loss. This module implements the paper's text: the prompt
enters as input embeddings (Eq. 19) and L_fuse (Eq. 18) is added with weight delta (``fuse_weight=0`` removes it).
Only ``rec_scope`` is offered as the code's option, because it changes the metric-relevant softmax.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mscrs_core.models.backbone import decoder_of
from mscrs_core.models.frozen import FrozenBackboneMixin
from mscrs_core.models.prompt_encoder import PromptEncoder, assemble_inputs

REC_SCOPES = ("items", "all_entities")
TASKS = ("rec", "pretrain")


@dataclass
class RecOutput:
    """Losses and scores of one forward pass."""

    loss: Tensor  # CE + delta * L_fuse
    ce: Tensor
    fuse_loss: Tensor
    logits: Tensor  # [B, N] (items) or [B, K] (entities), depending on the task/scope


class MSCRSRecommender(FrozenBackboneMixin, nn.Module):
    """Graph encoder + prompt encoder + frozen backbone + projection (Eq. 17-24).

    Args:
        graph_encoder: module, ``forward() -> Tensor[K, d]`` (E_final, Eq. 16); trained jointly.
        backbone: frozen Hugging Face causal LM (from :func:`~mscrs_core.models.backbone.load_backbone`).
        item_ids: LongTensor[N] of entity ids; position = item index (the ranking axis).
        tokenizer: the backbone's tokenizer, kept for building collators (not a module).
        max_entities, n_entity_prompt, n_task_prompt, tau, fuse_variant: see
            :class:`~mscrs_core.models.prompt_encoder.PromptEncoder`.
        fuse_weight: delta in Eq. (22)/(24).
        rec_scope: ``"items"`` (paper, Eq. 23) or ``"all_entities"`` (UniCRS / authors' code).
        entity_dim: d; inferred by calling ``graph_encoder()`` once when omitted.
    """

    def __init__(
        self,
        graph_encoder: nn.Module,
        backbone: nn.Module,
        item_ids: Tensor,
        *,
        tokenizer=None,
        max_entities: int = 32,
        n_entity_prompt: int = 4,
        n_task_prompt: int = 10,
        tau: float = 0.07,
        fuse_weight: float = 0.1,
        fuse_variant: str = "paper",
        rec_scope: str = "items",
        entity_dim: int | None = None,
    ):
        super().__init__()
        if rec_scope not in REC_SCOPES:
            raise ValueError(f"rec_scope: expected one of {REC_SCOPES}, got {rec_scope!r}")
        if fuse_weight < 0:
            raise ValueError(f"fuse_weight: expected >= 0, got {fuse_weight}")
        self.graph_encoder = graph_encoder
        self.backbone = backbone
        if any(p.requires_grad for p in backbone.parameters()):
            raise ValueError("backbone: expected a frozen model (use load_backbone or backbone.requires_grad_(False))")
        self.tokenizer = tokenizer
        if entity_dim is None:
            with torch.no_grad():
                table = graph_encoder()
            n_entities, entity_dim = table.shape
        else:
            n_entities = None
        item_ids = torch.as_tensor(item_ids, dtype=torch.long).flatten()
        if item_ids.numel() == 0 or item_ids.min() < 0:
            raise ValueError("item_ids: expected a non-empty LongTensor of non-negative entity ids")
        if n_entities is not None and int(item_ids.max()) >= n_entities:
            raise ValueError(f"item_ids: id {int(item_ids.max())} outside the entity table of size {n_entities}")
        self.register_buffer("item_ids", item_ids, persistent=False)
        # entity id -> item position (-1 for non-items), for Eq. (23) labels.
        size = int(item_ids.max()) + 1 if n_entities is None else n_entities
        index = torch.full((size,), -1, dtype=torch.long)
        index[item_ids] = torch.arange(item_ids.numel())
        self.register_buffer("item_index", index, persistent=False)
        hidden = backbone.config.hidden_size
        emb_std = float(backbone.get_input_embeddings().weight.detach().float().std())
        self.prompt_encoder = PromptEncoder(
            entity_dim, hidden, max_entities=max_entities, n_entity_prompt=n_entity_prompt,
            n_task_prompt=n_task_prompt, tau=tau, fuse_variant=fuse_variant, embedding_std=emb_std,
        )
        self.projection = nn.Linear(hidden, entity_dim)  # r_hat in R^d (Eq. 20) to score against E_final
        self.fuse_weight, self.rec_scope = fuse_weight, rec_scope


    # ------------------------------------------------------------------ model
    def encode(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Eq. (17)-(20): returns (r_hat [B, d], L_fuse, E_final [K, d])."""
        table = self.graph_encoder()  # E_final, Eq. (16)
        ids = batch["entity_ids"]
        if ids.numel() and int(ids.max()) >= table.shape[0]:
            raise ValueError(f"entity_ids: id {int(ids.max())} outside the entity table of size {table.shape[0]}")
        token_embeds = self.backbone.get_input_embeddings()(batch["input_ids"])
        out = self.prompt_encoder(table[ids], batch["entity_mask"], token_embeds, batch["attention_mask"])
        embeds, mask, positions = assemble_inputs(out.prompt, token_embeds, batch["attention_mask"])
        hidden = decoder_of(self.backbone)(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False
        ).last_hidden_state
        r_hat = self.projection(hidden[:, -1])  # last (always real) token, Eq. (20)
        return r_hat, out.fuse_loss, table

    def forward(self, batch: dict[str, Tensor], task: str = "rec") -> RecOutput:
        """Loss of Eq. (22) (``task="pretrain"``) or Eq. (24) (``task="rec"``)."""
        if task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
        r_hat, fuse, table = self.encode(batch)
        labels = batch["labels"]
        if task == "rec" and self.rec_scope == "items":
            logits = r_hat @ table[self.item_ids].T  # Eq. (23)
            targets = self.item_positions(labels)
        else:
            logits = r_hat @ table.T  # Eq. (21); UniCRS-style rec training over all entities
            targets = labels
        ce = F.cross_entropy(logits, targets)
        return RecOutput(ce + self.fuse_weight * fuse, ce, fuse, logits)

    def item_positions(self, entity_labels: Tensor) -> Tensor:
        """Map gold entity ids to positions on the item axis; non-items raise ValueError."""
        if int(entity_labels.max()) >= self.item_index.numel():
            raise ValueError("labels: an entity id lies outside the entity table")
        pos = self.item_index[entity_labels]
        if bool((pos < 0).any()):
            bad = entity_labels[pos < 0][:5].tolist()
            raise ValueError(f"labels: entity ids {bad} are not items (not in item_ids)")
        return pos

    @torch.no_grad()
    def score_items(self, batch: dict[str, Tensor]) -> Tensor:
        """Scores over the item axis for evaluation, ``Tensor[B, N]`` (Eq. 23 logits)."""
        r_hat, _, table = self.encode(batch)
        return r_hat @ table[self.item_ids].T

    @torch.no_grad()
    def score_entities(self, batch: dict[str, Tensor]) -> Tensor:
        """Scores over all K entities (pre-training evaluation, Eq. 21 logits)."""
        r_hat, _, table = self.encode(batch)
        return r_hat @ table.T
