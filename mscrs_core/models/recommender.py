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
The code's options: ``rec_scope`` (it changes the metric-relevant softmax) and ``prompt_injection="layers"`` (the
prompt as every layer's keys and values, without the cross-attention).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mscrs_core.models.backbone import decoder_of
from mscrs_core.models.context_states import PROMPT_POSITIONS, ContextStateBank, encode_context, run_after_context
from mscrs_core.models.frozen import FrozenBackboneMixin
from mscrs_core.models.layer_prompt import LayerPrompt, append_layer_prompt, check_prompt_injection
from mscrs_core.models.pretrained import PretrainedMixin
from mscrs_core.models.prompt_encoder import PromptEncoder, assemble_inputs
from mscrs_core.models.title_readout import DEFAULT_CUE, TitleReadout

REC_SCOPES = ("items", "all_entities")
TASKS = ("rec", "pretrain")
HEADS = ("dot", "cosine")
READOUTS = ("last", "mean")
CONTEXT_ENCODERS = ("backbone_embeddings", "text_encoder")


@dataclass
class RecommenderConfig:
    """Every hyper-parameter of :class:`MSCRSRecommender`, with its default, in one place (saved with the model).

    Paper (Eq. 17-24): ``head="dot"``, ``item_bias=False``, ``entity_skip=False``, ``prompt_position="prefix"``.
    The CPU recipe of the book (chapter 3 names each deviation):

    * ``head="cosine"``: logits = s * cos(r_hat, e_i) with a learned scale s = exp(log_scale) (init
      ``init_scale``): the scale of the scores can grow without the entity rows having to grow with it.
    * ``item_bias=True``: a learned per-item bias b_i (initialised to log popularity by
      :meth:`MSCRSRecommender.init_item_bias`), so popularity need not be written into the item rows.
    * ``entity_skip=True``: r_hat = lm_scale * W_proj h_last + mean of the context's entity rows: the context
      entities reach the score directly, not only through the language model; with ``zero_init_projection`` the
      untrained model is exactly the graph scorer plus the popularity bias, and training adds what the LM
      contributes. ``lm_scale`` keeps the two terms commensurate: the entity rows start with norms near 0.1
      while an LM state has hundreds of coordinates of order one, so a projection trained at the prompt's rate
      would drown the entity term within an epoch (the head is a cosine: only the ratio of the terms matters).
    * ``mention_bias=True``: items already mentioned in the dialog get a learned bonus beta + gamma * r on their
      logit (r in (0, 1], 1 for the latest first mention; beta, gamma start at ``mention_init`` and half of it).
      Re-mentions are a large share of the gold items in both datasets (chapter 4's "mentioned" slice) and the
      entity mean dilutes an item among the genres and people around it; a bonus the model learns says how far
      to trust a repetition, where the ``copy_context`` reference trusts it absolutely.
    * ``prompt_position="suffix"``: [s; V_hat; O_rec] instead of Eq. (19)'s [V_hat; O_rec; s], so the context's
      key/value states are computed once without gradient (:mod:`~mscrs_core.models.context_states`).
    * ``context_encoder="text_encoder"``: T_s (Eq. 17-18) from a frozen sentence encoder over the newest context
      tokens, as the paper's RoBERTa (here all-MiniLM-L6-v2, 384-d, mapped to the backbone's width by a trained
      linear layer); the default ``"backbone_embeddings"`` averages the backbone's input embeddings instead.
      ``text_skip=True`` adds the same features, mapped into the entity space, to the skip path.
    * ``readout``: Eq. (20) writes ``Pooling(F(r_s))`` and the text says the last token's state is used
      (``"last"``, the default). ``"mean"`` pools the output states of the soft prompt's positions instead: in
      either order every prompt position attends to the whole context, so the mean reads what all of them
      gathered rather than what one position kept.
    * ``prompt_injection="layers"`` (the authors' code, UniCRS's prefix tuning; ``suffix`` order only): the prompt
      vectors [V_hat; O_rec] are mapped by a :class:`~mscrs_core.models.layer_prompt.LayerPrompt` to keys and values
      of every layer, appended to the context's states, and Eq. (20) reads the state of the last token of
      ``title_cue`` run after them (a prompt given as keys and values has no output state of its own; the cue's
      last position is where the frozen model itself would name a movie). ``readout="mean"`` pools the cue's
      positions. ``"inputs"`` (default): Eq. (19)'s input embeddings.
    * ``title_readout=True``: the logits also get ``gamma * t_i(s)``, the frozen backbone's own readout of item i's
      title as the next words after the context and the cue ``title_cue`` (a pointwise mutual information,
      :mod:`~mscrs_core.models.title_readout`); ``gamma`` starts at 0. Computed once per context without gradient,
      so the warm-up (the soft-prompt path closed) uses it too. Needs ``item_titles`` and the tokenizer.
    """

    max_entities: int = 32  # q
    n_entity_prompt: int = 4  # p
    n_task_prompt: int = 10  # length of O_rec (the paper's range 10..50)
    tau: float = 0.07  # Eq. (18)
    fuse_weight: float = 0.1  # delta, Eq. (22)/(24)
    fuse_variant: str = "paper"
    rec_scope: str = "items"  # "items" (Eq. 23) | "all_entities" (UniCRS / authors' code)
    head: str = "cosine"  # "dot" (Eq. 21/23) | "cosine"
    init_scale: float = 10.0  # cosine head: initial logit scale
    item_bias: bool = True
    entity_skip: bool = True
    zero_init_projection: bool = True
    lm_scale: float = 0.1  # with entity_skip: r_hat = skip + lm_scale * W_proj h (see the class docstring)
    mention_bias: bool = True
    mention_init: float = 2.0  # beta's start; gamma starts at half of it
    prompt_position: str = "suffix"  # "prefix" (Eq. 19) | "suffix"
    # T_s of Eq. (17)-(18) (the paper: RoBERTa over the context): "backbone_embeddings" (the mean of the frozen
    # backbone's input embeddings; no extra encoder) | "text_encoder" (a frozen sentence encoder's features of the
    # newest context tokens, batch["context_text"], mapped to the backbone's width by a trained linear layer)
    context_encoder: str = "backbone_embeddings"
    context_text_dim: int = 384  # width of batch["context_text"] (all-MiniLM-L6-v2: 384; RoBERTa-base: 768)
    # with entity_skip and context_encoder="text_encoder": the skip path also carries W_t T_s (a trained linear map
    # of the text features into the entity space, zero-initialised), so the context's words reach the score
    # without having to survive the language model, as its entities do
    text_skip: bool = False
    # Eq. (20)'s Pooling: "last" (the paper's text: "the last token representation") | "mean" (the mean over the
    # soft prompt's output states, which all attend to the whole context)
    readout: str = "last"
    # the backbone's own next-token readout of the item titles after a textual cue, added as gamma * t_i(s) to the
    # logits, gamma learned from zero (mscrs_core.models.title_readout; beyond the paper, chapter 3)
    title_readout: bool = False
    title_cue: str = DEFAULT_CUE
    # how the prompt enters the backbone: "inputs" (Eq. 19) | "layers" (every layer's keys and values, read out at
    # title_cue's last token; the authors' code; suffix order only)
    prompt_injection: str = "inputs"

    def __post_init__(self) -> None:
        if self.rec_scope not in REC_SCOPES:
            raise ValueError(f"rec_scope: expected one of {REC_SCOPES}, got {self.rec_scope!r}")
        if self.head not in HEADS:
            raise ValueError(f"head: expected one of {HEADS}, got {self.head!r}")
        if self.prompt_position not in PROMPT_POSITIONS:
            raise ValueError(f"prompt_position: expected one of {PROMPT_POSITIONS}, got {self.prompt_position!r}")
        if self.fuse_weight < 0:
            raise ValueError(f"fuse_weight: expected >= 0, got {self.fuse_weight}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout: expected one of {READOUTS}, got {self.readout!r}")
        if self.context_encoder not in CONTEXT_ENCODERS:
            raise ValueError(f"context_encoder: expected one of {CONTEXT_ENCODERS}, got {self.context_encoder!r}")
        if self.context_text_dim < 1:
            raise ValueError(f"context_text_dim: expected >= 1, got {self.context_text_dim}")
        if self.text_skip and (self.context_encoder != "text_encoder" or not self.entity_skip):
            raise ValueError("text_skip: needs context_encoder='text_encoder' and entity_skip=True")
        if self.init_scale <= 0:
            raise ValueError(f"init_scale: expected > 0, got {self.init_scale}")
        if self.lm_scale <= 0:
            raise ValueError(f"lm_scale: expected > 0, got {self.lm_scale}")
        check_prompt_injection(self.prompt_injection, self.prompt_position)
        if self.prompt_injection == "layers" and not self.title_cue:
            raise ValueError("title_cue: expected a non-empty text with prompt_injection='layers' (the readout)")
        if self.title_readout and not self.title_cue:
            raise ValueError("title_cue: expected a non-empty text with title_readout=True")

    @classmethod
    def paper(cls, **overrides) -> "RecommenderConfig":
        """Eq. (17)-(24) as printed: dot-product head, no item bias, no skip path, prompt before the context."""
        base = dict(head="dot", item_bias=False, entity_skip=False, zero_init_projection=False,
                    mention_bias=False, prompt_position="prefix")
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RecommenderConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"RecommenderConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


@dataclass
class RecOutput:
    """Losses and scores of one forward pass."""

    loss: Tensor  # CE + delta * L_fuse
    ce: Tensor
    fuse_loss: Tensor
    logits: Tensor  # [B, N] (items) or [B, K] (entities), depending on the task/scope


class MSCRSRecommender(PretrainedMixin, FrozenBackboneMixin, nn.Module):
    """Graph encoder + prompt encoder + frozen backbone + projection (Eq. 17-24).

    Args:
        graph_encoder: module, ``forward() -> Tensor[K, d]`` (E_final, Eq. 16); trained jointly.
        backbone: frozen Hugging Face causal LM (from :func:`~mscrs_core.models.backbone.load_backbone`).
        item_ids: LongTensor[N] of entity ids; position = item index (the ranking axis).
        tokenizer: the backbone's tokenizer, kept for building collators (not a module).
        config: :class:`RecommenderConfig`; keyword arguments named like its fields override it.
        entity_dim: d; inferred by calling ``graph_encoder()`` once when omitted.
        item_titles: one title per item (``config.title_readout``; :func:`~mscrs_core.models.title_readout.item_title`
            of the entity names).

    ``save_pretrained(dir)`` / ``MSCRSRecommender.from_pretrained(dir)`` (:mod:`~mscrs_core.models.pretrained`)
    write and rebuild it: config, trainable weights, graphs, item ids, tokenizer; the backbone is reloaded by name.
    """

    model_type = "mscrs_recommender"
    config_class = RecommenderConfig
    #: parameter-name prefixes of the language-model path (prompt, its map into the layers, the readout's
    #: projection): what a stage after the warm-up trains with ``lm_trains="prompt"``
    LM_PATH_PREFIXES = ("prompt_encoder.", "projection.", "text_projection.", "layer_prompt.")

    def __init__(
        self,
        graph_encoder: nn.Module,
        backbone: nn.Module,
        item_ids: Tensor,
        *,
        tokenizer=None,
        config: RecommenderConfig | None = None,
        entity_dim: int | None = None,
        item_titles: list[str] | None = None,
        **overrides,
    ):
        super().__init__()
        config = replace(config or RecommenderConfig(), **overrides) if overrides else (config or RecommenderConfig())
        self.config = config
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
            entity_dim, hidden, max_entities=config.max_entities, n_entity_prompt=config.n_entity_prompt,
            n_task_prompt=config.n_task_prompt, tau=config.tau, fuse_variant=config.fuse_variant,
            embedding_std=emb_std,
        )
        if config.context_encoder == "text_encoder":  # T_s = W_T x_s, x_s the sentence encoder's features
            self.text_projection = nn.Linear(config.context_text_dim, hidden)
        if config.text_skip:  # zero at the start: the skip path begins as the entity mean alone
            self.text_skip_map = nn.Linear(config.context_text_dim, entity_dim)
            nn.init.zeros_(self.text_skip_map.weight)
            nn.init.zeros_(self.text_skip_map.bias)
        self.context_features = None  # samples -> [B, context_text_dim] (context_encoder="text_encoder"), for collators
        self.projection = nn.Linear(hidden, entity_dim)  # r_hat in R^d (Eq. 20) to score against E_final
        if config.zero_init_projection:
            nn.init.zeros_(self.projection.weight)
            nn.init.zeros_(self.projection.bias)
        if config.head == "cosine":
            self.log_scale = nn.Parameter(torch.tensor(math.log(config.init_scale)))
        if config.item_bias:
            self.item_bias = nn.Parameter(torch.zeros(item_ids.numel()))
        if config.mention_bias:
            self.mention_weight = nn.Parameter(torch.tensor(float(config.mention_init)))
            self.mention_recency = nn.Parameter(torch.tensor(float(config.mention_init) / 2))
        self.title_readout: TitleReadout | None = None
        if config.title_readout:
            if tokenizer is None or item_titles is None or len(item_titles) != item_ids.numel():
                raise ValueError(f"title_readout: needs the tokenizer and one title per item ({item_ids.numel()}), "
                                 f"got {None if item_titles is None else len(item_titles)} titles")
            self.title_readout = TitleReadout(backbone, tokenizer, item_titles, config.title_cue)
            self.title_weight = nn.Parameter(torch.tensor(0.0))  # gamma: the untrained model is unchanged
        self.layer_prompt: LayerPrompt | None = None
        if config.prompt_injection == "layers":
            if tokenizer is None:
                raise ValueError("prompt_injection='layers': needs the tokenizer (the readout cue is tokenised)")
            self.layer_prompt = LayerPrompt.for_backbone(backbone)
            cue = tokenizer(config.title_cue, add_special_tokens=False)["input_ids"]
            self.register_buffer("readout_ids", torch.tensor(cue, dtype=torch.long), persistent=False)
        self.fuse_weight, self.rec_scope = config.fuse_weight, config.rec_scope
        self.context_bank: ContextStateBank | None = None
        self.lm_path = True

    # ------------------------------------------------------------------ save_pretrained / from_pretrained
    def _pretrained_extras(self) -> dict:
        extras = {"item_ids": [int(i) for i in self.item_ids.tolist()], "lm_path": bool(self.lm_path)}
        if self.title_readout is not None:
            extras["item_titles"] = list(self.title_readout.titles)
        return extras

    @classmethod
    def _build_pretrained(cls, directory, config, graph_encoder, backbone, tokenizer, extras):
        """The untrained model of a :meth:`save_pretrained` folder (LM path closed when it was saved closed)."""
        item_ids = extras.get("item_ids")
        if not isinstance(item_ids, list) or not all(isinstance(i, int) for i in item_ids):
            raise ValueError(f"{directory / 'config.json'}: extras.item_ids must be a list of entity ids")
        titles = extras.get("item_titles")
        if config.title_readout and (not isinstance(titles, list) or not all(isinstance(t, str) for t in titles)):
            raise ValueError(f"{directory / 'config.json'}: extras.item_titles must be a list of titles "
                             "(title_readout=True)")
        model = cls(graph_encoder, backbone, torch.tensor(item_ids, dtype=torch.long), tokenizer=tokenizer,
                    config=config, item_titles=titles if config.title_readout else None)
        if not extras.get("lm_path", True):
            model.close_lm_path()
        return model

    def close_lm_path(self, closed: bool = True) -> None:
        """Skip the language model: r_hat = the mean context-entity row (the skip path) alone.

        With a zero-initialised projection this is exactly the model's own untrained output, so a warm-up in
        this state trains the graph side, the scale and the item bias at a fraction of a step's cost (no
        backbone pass) before the prompt and the language model join (``entity_skip`` must be on).
        """
        if closed and not self.config.entity_skip:
            raise ValueError("close_lm_path: needs entity_skip=True (otherwise nothing reaches the score)")
        self.lm_path = not closed

    def init_item_bias(self, counts: Tensor) -> None:
        """Start the item bias at log popularity: log((count_i + 1) / sum_j (count_j + 1))."""
        if not self.config.item_bias:
            raise ValueError("init_item_bias: the model has no item bias (config.item_bias=False)")
        counts = torch.as_tensor(counts, dtype=torch.float).flatten()
        if counts.numel() != self.item_ids.numel():
            raise ValueError(f"counts: expected {self.item_ids.numel()} values (one per item), got {counts.numel()}")
        with torch.no_grad():
            self.item_bias.copy_(torch.log_softmax(torch.log(counts + 1.0), dim=0))

    def attach_context_bank(self, bank: ContextStateBank | None) -> None:
        """Use ``bank`` for the context's key/value states (``prompt_position="suffix"`` only); None: uncached."""
        if bank is not None and self.config.prompt_position != "suffix":
            raise ValueError("attach_context_bank: only the suffix prompt order reuses context states")
        self.context_bank = bank

    # ------------------------------------------------------------------ model
    def encode(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Eq. (17)-(20): returns (r_hat [B, d], L_fuse, E_final [K, d])."""
        table = self.graph_encoder()  # E_final, Eq. (16)
        ids = batch["entity_ids"]
        if ids.numel() and int(ids.max()) >= table.shape[0]:
            raise ValueError(f"entity_ids: id {int(ids.max())} outside the entity table of size {table.shape[0]}")
        mask = batch["attention_mask"]
        token_embeds = self.backbone.get_input_embeddings()(batch["input_ids"])
        v_s = table[ids]
        text = None
        if self.config.context_encoder == "text_encoder":
            if "context_text" not in batch:
                raise ValueError("batch: context_encoder='text_encoder' needs batch['context_text'] (a RecCollator "
                                 "with context_features, e.g. model.context_features)")
            text = batch["context_text"].float()
        out = self.prompt_encoder(v_s, batch["entity_mask"], token_embeds.float(), mask,
                                  text_states=None if text is None else self.text_projection(text))
        if not self.lm_path:
            return self.skip_path(v_s, batch["entity_mask"], text), out.fuse_loss, table
        pooled = (self.layer_prompt_state(batch, out.prompt) if self.layer_prompt is not None
                  else self.input_prompt_state(out.prompt, token_embeds, batch["input_ids"], mask))
        r_hat = self.projection(pooled)
        if self.config.entity_skip:
            r_hat = self.config.lm_scale * r_hat + self.skip_path(v_s, batch["entity_mask"], text)
        return r_hat, out.fuse_loss, table

    def input_prompt_state(self, prompt: Tensor, token_embeds: Tensor, input_ids: Tensor, mask: Tensor) -> Tensor:
        """Eq. (19)-(20) with the prompt as input embeddings: the pooled output state ``[B, H]`` (float32)."""
        if self.config.prompt_position == "prefix":
            embeds, full_mask, positions = assemble_inputs(prompt, token_embeds, mask)
            hidden = decoder_of(self.backbone)(
                inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions, use_cache=False
            ).last_hidden_state
        elif self.context_bank is not None:  # [s; prompt], s's states computed once without grad
            hidden = run_after_context(self.backbone, self.context_bank.lookup(input_ids, mask), prompt)
        else:  # [s; prompt] in one pass (the reference the cached path is tested against)
            embeds = torch.cat([token_embeds, prompt.to(token_embeds.dtype)], dim=1)
            full_mask = torch.cat([mask, torch.ones_like(mask[:, :1]).expand(-1, prompt.shape[1])], dim=1)
            positions = (full_mask.cumsum(1) - 1).clamp_min(0)
            hidden = decoder_of(self.backbone)(
                inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions, use_cache=False
            ).last_hidden_state
        if self.config.readout == "last":  # the last position (a real token or the prompt's end), Eq. (20)
            return hidden[:, -1].float()
        n = prompt.shape[1]  # Eq. (20)'s Pooling over the soft prompt's positions
        if self.config.prompt_position == "prefix":  # [pads, prompt, tokens]: the prompt starts after the pads
            start = (mask.shape[1] - mask.sum(1)).unsqueeze(1)
            idx = (start + torch.arange(n, device=start.device)).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
            return hidden.gather(1, idx).float().mean(1)
        return hidden[:, -n:].float().mean(1)  # [s; prompt]: the prompt's states are the last n

    def layer_prompt_state(self, batch: dict[str, Tensor], prompt: Tensor) -> Tensor:
        """Eq. (20) with the prompt as every layer's keys and values (``prompt_injection="layers"``): the state of
        ``title_cue`` run after [s; prompt] (its last token, or the mean of its tokens), ``[B, H]`` float32."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        states = (self.context_bank.lookup(ids, mask) if self.context_bank is not None
                  else encode_context(self.backbone, ids, mask))
        states = append_layer_prompt(self.backbone, self.layer_prompt, states.to(mask.device), prompt)
        cue = self.backbone.get_input_embeddings()(self.readout_ids).unsqueeze(0).expand(mask.shape[0], -1, -1)
        hidden = run_after_context(self.backbone, states, cue).float()
        return hidden.mean(1) if self.config.readout == "mean" else hidden[:, -1]

    def skip_path(self, v_s: Tensor, entity_mask: Tensor, text: Tensor | None) -> Tensor:
        """The path around the language model (``entity_skip``): the mean of the context's entity rows, plus
        W_t x_s when ``text_skip`` (x_s the context's sentence-encoder features). [B, d]."""
        m = entity_mask.unsqueeze(-1).to(v_s.dtype)
        skip = (v_s * m).sum(1) / m.sum(1).clamp_min(1.0)
        if self.config.text_skip:
            skip = skip + self.text_skip_map(text)
        return skip

    def mention_bonus(self, batch: dict[str, Tensor], item_axis: bool, width: int) -> Tensor | None:
        """[B, width] logit bonus of the items already mentioned (``mention_bias``): beta + gamma * r, where r is
        the mention's rank in order of first mention divided by their number (1 for the latest); None when off."""
        if not self.config.mention_bias or "mentioned_ids" not in batch:
            return None
        ids, mask = batch["mentioned_ids"], batch["mentioned_mask"]
        if item_axis:  # entity id -> item position; mentioned entities that are not items get no bonus
            inside = ids < self.item_index.numel()
            pos = torch.where(inside, self.item_index[ids.clamp_max(self.item_index.numel() - 1)], -1)
            mask = mask & inside & (pos >= 0)
            ids = pos.clamp_min(0)
        rank = mask.long().cumsum(1).float()
        recency = rank / rank[:, -1:].clamp_min(1.0)
        value = (self.mention_weight + self.mention_recency * recency) * mask
        return torch.zeros(ids.shape[0], width, device=value.device, dtype=value.dtype).scatter_add(1, ids, value)

    def title_bonus(self, batch: dict[str, Tensor], item_axis: bool, width: int) -> Tensor | None:
        """[B, width] gamma * t_i(s) (``title_readout``; items only on the entity axis); None when off."""
        if self.title_readout is None:
            return None
        readout = self.title_readout.lookup(batch["input_ids"].cpu(), batch["attention_mask"].cpu(), self.context_bank)
        value = self.title_weight * readout.to(self.title_weight.device)
        if item_axis:
            return value
        return torch.zeros(value.shape[0], width, device=value.device, dtype=value.dtype).index_copy(
            1, self.item_ids.to(value.device), value)

    def bonus(self, batch: dict[str, Tensor], item_axis: bool, width: int, task: str = "rec") -> Tensor | None:
        """The logit terms beside the head's: the mention bonus and, except in pre-training (its context holds the
        response that names the target), the title readout."""
        terms = [self.mention_bonus(batch, item_axis, width)]
        if task == "rec":
            terms.append(self.title_bonus(batch, item_axis, width))
        terms = [t for t in terms if t is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def scores(self, r_hat: Tensor, rows: Tensor, item_axis: bool, bonus: Tensor | None = None) -> Tensor:
        """Logits of Eq. (21)/(23) under the configured head (cosine: scaled, plus item bias on the item axis,
        plus the mention bonus when given)."""
        if self.config.head == "cosine":
            logits = self.log_scale.exp() * (F.normalize(r_hat, dim=-1) @ F.normalize(rows, dim=-1).T)
        else:
            logits = r_hat @ rows.T
        if self.config.item_bias:
            bias = self.item_bias if item_axis else torch.zeros(rows.shape[0], device=rows.device).index_copy(
                0, self.item_ids, self.item_bias)
            logits = logits + bias
        if bonus is not None:
            logits = logits + bonus
        return logits

    def forward(self, batch: dict[str, Tensor], task: str = "rec") -> RecOutput:
        """Loss of Eq. (22) (``task="pretrain"``) or Eq. (24) (``task="rec"``)."""
        if task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
        r_hat, fuse, table = self.encode(batch)
        labels = batch["labels"]
        if task == "rec" and self.rec_scope == "items":
            logits = self.scores(r_hat, table[self.item_ids], item_axis=True,
                                 bonus=self.bonus(batch, True, self.item_ids.numel(), task))  # Eq. (23)
            targets = self.item_positions(labels)
        else:  # Eq. (21); UniCRS-style rec over all entities
            logits = self.scores(r_hat, table, item_axis=False, bonus=self.bonus(batch, False, table.shape[0], task))
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
        return self.scores(r_hat, table[self.item_ids], item_axis=True,
                           bonus=self.bonus(batch, True, self.item_ids.numel()))

    @torch.no_grad()
    def score_entities(self, batch: dict[str, Tensor]) -> Tensor:
        """Scores over all K entities (pre-training evaluation, Eq. 21 logits)."""
        r_hat, _, table = self.encode(batch)
        return self.scores(r_hat, table, item_axis=False, bonus=self.bonus(batch, False, table.shape[0], "pretrain"))
