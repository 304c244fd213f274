"""Multi-modal semantic graph prompt (paper Sec. 4.3, Eq. 17-19).

Shapes: B batch, q entity slots (fixed ``max_entities``), p entity-prompt positions, n task-prompt positions,
d entity dim, H backbone hidden size (the paper's d_c).

Choices (documented deviations):

* T_s (the paper uses RoBERTa): by default the mean of the frozen backbone's INPUT embeddings over the real
  tokens of the context s. It costs nothing extra, lives in the backbone's space already (so Eq. 17's W2 targets
  H) and keeps the whole model to one frozen network. The caller may pass its own T_s (``text_states``): the
  recommender's ``context_encoder="text_encoder"`` maps a frozen sentence encoder's features of the context to
  H, the paper's route. Either way it is a single vector per dialog, added to every entity-prompt position in
  V_hat = V_tilde + T_s.
* Eq. 17 with a fixed q: entity slots are RIGHT-aligned (slot q-1 is the most recent mention), padded slots are
  zeroed, so W1's columns mean "k-th most recent entity" for every dialog.
* Eq. 18 needs one vector per side: V_tilde is mean-pooled over its p positions; both sides are L2-normalised
  (cosine similarity), which keeps the loss bounded (the paper's dot products are unbounded because its
  denominators compare T with T and V with V). Negatives: the other dialogs of the batch (gamma runs over the
  batch, s included). ``fuse_variant="paper"`` is Eq. 18 as printed (intra-modal denominators);
  ``"infonce"`` is the usual symmetric cross-modal InfoNCE (denominators T_s.V_gamma and V_s.T_gamma).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FUSE_VARIANTS = ("paper", "infonce")


@dataclass
class PromptOutput:
    """Output of :class:`PromptEncoder`: the soft prompt [V_hat; O_rec] and the fusion loss."""

    prompt: Tensor  # [B, p + n, H]
    fuse_loss: Tensor  # scalar, Eq. (18)
    entity_prompt: Tensor  # V_tilde, [B, p, H]
    text_embedding: Tensor  # T_s, [B, H]


class PromptEncoder(nn.Module):
    """Eq. (17)-(19): entity prompt V_tilde = W1 V_s W2, fusion loss, V_hat = V_tilde + T_s, task prompt O_rec.

    Args:
        entity_dim: d, width of the fused entity table E_final (Eq. 16).
        hidden_size: H (d_c), the backbone's hidden size.
        max_entities: q, number of entity slots (most recent q mentions are kept by the collator).
        n_entity_prompt: p, number of entity-prompt positions produced by W1.
        n_task_prompt: length of O_rec (the paper's range 10..50).
        tau: temperature of Eq. (18).
        fuse_variant: ``"paper"`` (Eq. 18 as printed) or ``"infonce"`` (symmetric cross-modal InfoNCE).
        prompt_init_std: std of the random O_rec init; default: std of the backbone's word embeddings if
            given through ``embedding_std``, else 0.02.

    The sizes and ``tau`` have no defaults here: the model that owns the layer passes them from its config
    (:class:`~mscrs_core.models.recommender.RecommenderConfig`,
    :class:`~mscrs_core.models.conversation.ConversationConfig`), where each default is written once.
    """

    def __init__(
        self,
        entity_dim: int,
        hidden_size: int,
        *,
        max_entities: int,
        n_entity_prompt: int,
        n_task_prompt: int,
        tau: float,
        fuse_variant: str = "paper",
        embedding_std: float | None = None,
    ):
        super().__init__()
        if fuse_variant not in FUSE_VARIANTS:
            raise ValueError(f"fuse_variant: expected one of {FUSE_VARIANTS}, got {fuse_variant!r}")
        for name, value in (("entity_dim", entity_dim), ("hidden_size", hidden_size),
                            ("max_entities", max_entities), ("n_entity_prompt", n_entity_prompt)):
            if value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value}")
        if n_task_prompt < 0:
            raise ValueError(f"n_task_prompt: expected >= 0, got {n_task_prompt}")
        if tau <= 0:
            raise ValueError(f"tau: expected > 0, got {tau}")
        self.max_entities, self.n_entity_prompt, self.n_task_prompt = max_entities, n_entity_prompt, n_task_prompt
        self.tau, self.fuse_variant = tau, fuse_variant
        # W1 in R^{p x q}: mixes entity slots into prompt positions (Eq. 17). Init: the uniform average over the
        # slots plus noise, so every prompt position sees every mention from the first step on.
        w1 = torch.empty(n_entity_prompt, max_entities)
        nn.init.uniform_(w1, -1.0 / math.sqrt(max_entities), 1.0 / math.sqrt(max_entities))
        self.w1 = nn.Parameter(w1 + 1.0 / max_entities)
        # W2 in R^{d x d_c}: entity space -> backbone space; bias-free to stay a bilinear map as printed.
        self.w2 = nn.Linear(entity_dim, hidden_size, bias=False)
        std = embedding_std if embedding_std is not None else 0.02
        self.task_prompt = nn.Parameter(torch.randn(n_task_prompt, hidden_size) * std)  # O_rec, random init

    @property
    def prompt_length(self) -> int:
        """Number of soft positions prepended to the context: p + n."""
        return self.n_entity_prompt + self.n_task_prompt

    def entity_prompt(self, entity_embeds: Tensor, entity_mask: Tensor) -> Tensor:
        """Eq. (17): V_tilde = W1 V_s W2 with padded slots zeroed. [B,q,d], [B,q] -> [B,p,H]."""
        if entity_embeds.shape[1] != self.max_entities:
            raise ValueError(f"entity slots: expected {self.max_entities}, got {entity_embeds.shape[1]}")
        v = entity_embeds * entity_mask.unsqueeze(-1).to(entity_embeds.dtype)
        return self.w2(torch.einsum("pq,bqd->bpd", self.w1, v))

    @staticmethod
    def text_embedding(token_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        """T_s: mean of the context's input embeddings over real tokens. [B,L,H], [B,L] -> [B,H]."""
        m = attention_mask.unsqueeze(-1).to(token_embeds.dtype)
        return (token_embeds * m).sum(1) / m.sum(1).clamp_min(1.0)

    def fuse_loss(self, v_tilde: Tensor, t_s: Tensor) -> Tensor:
        """Eq. (18) with in-batch negatives, averaged over the batch (see module docstring)."""
        v = F.normalize(v_tilde.mean(1), dim=-1)
        t = F.normalize(t_s, dim=-1)
        pos = (v * t).sum(-1) / self.tau  # T_s . V_tilde_s / tau, [B]
        if self.fuse_variant == "paper":
            den_t = torch.logsumexp(t @ t.T / self.tau, dim=1)  # sum_gamma exp(T_s . T_gamma / tau)
            den_v = torch.logsumexp(v @ v.T / self.tau, dim=1)  # sum_gamma exp(V_s . V_gamma / tau)
        else:
            den_t = torch.logsumexp(t @ v.T / self.tau, dim=1)
            den_v = torch.logsumexp(v @ t.T / self.tau, dim=1)
        return ((den_t - pos) + (den_v - pos)).mean()

    def forward(
        self, entity_embeds: Tensor, entity_mask: Tensor, token_embeds: Tensor, attention_mask: Tensor,
        text_states: Tensor | None = None,
    ) -> PromptOutput:
        """Build [V_hat; O_rec] (the soft part of Eq. 19) and L_fuse.

        Args:
            entity_embeds: V_s looked up in E_final, [B, q, d] (padded slots arbitrary, masked here).
            entity_mask: [B, q], True for real entities.
            token_embeds: the backbone's input embeddings of the context tokens, [B, L, H].
            attention_mask: [B, L], 1 for real tokens.
            text_states: T_s given by the caller, [B, H] (a text encoder's features of the context, mapped to H);
                None: :meth:`text_embedding` of ``token_embeds``.
        """
        v_tilde = self.entity_prompt(entity_embeds, entity_mask)
        t_s = self.text_embedding(token_embeds, attention_mask) if text_states is None else text_states
        fuse = self.fuse_loss(v_tilde, t_s)
        v_hat = v_tilde + t_s.unsqueeze(1)  # V_hat = V_tilde + T_s
        task = self.task_prompt.unsqueeze(0).expand(v_hat.shape[0], -1, -1).to(v_hat.dtype)
        return PromptOutput(torch.cat([v_hat, task], dim=1), fuse, v_tilde, t_s)


def assemble_inputs(prompt: Tensor, token_embeds: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. (19): r_s = [V_hat; O_rec; s] as ``inputs_embeds`` for the backbone.

    ``token_embeds``/``attention_mask`` are LEFT-padded (real tokens end at the last column). Each row becomes
    [pads, prompt, real tokens] so the prompt sits right before its own context, the LAST position is always a
    real token (Eq. 20 pools it) and position ids count real positions only (0 at the first prompt slot).

    Returns:
        inputs_embeds [B, P+L, H], attention_mask [B, P+L] (long), position_ids [B, P+L].
    """
    length = token_embeds.shape[1]
    p = prompt.shape[1]
    n_pad = length - attention_mask.sum(1)  # o_i: left padding of row i, [B]
    j = torch.arange(p + length, device=token_embeds.device).unsqueeze(0)  # target positions
    o = n_pad.unsqueeze(1)
    # Source index into cat([prompt, tokens]): pads -> the token pads, then the prompt, then the tokens.
    src = torch.where(j < o, p + j, torch.where(j < o + p, j - o, j))
    source = torch.cat([prompt.to(token_embeds.dtype), token_embeds], dim=1)
    embeds = torch.gather(source, 1, src.unsqueeze(-1).expand(-1, -1, source.shape[-1]))
    mask = (j >= o).long()
    position_ids = (mask.cumsum(1) - 1).clamp_min(0)
    return embeds, mask, position_ids
