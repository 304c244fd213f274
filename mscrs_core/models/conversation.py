"""MSCRS conversation model: prompt c_s = [T_tilde_s; O_cov; s] and the loss of Eq. (29) (paper Sec. 4.4).

Pipeline for a context s:

1. Q_hat_s (Eq. 25, :mod:`~mscrs_core.models.enhanced_entities`): the context entities plus their first-order
   neighbours in the active semantic graphs; they fill the q entity slots (context entities last, so they are
   never truncated) and define the context graph of step 3.
2. T_hat_s = T + V_tilde_s: V_tilde_s = W1 V_s W2 (Eq. 17) from E_final (Eq. 16), T the mean input embedding of
   the context tokens (the recommender's choice, see :mod:`~mscrs_core.models.prompt_encoder`); computed by a
   :class:`~mscrs_core.models.prompt_encoder.PromptEncoder` of the conversation's own (whose task prompt is O_cov).
3. e_hat_s (Eq. 26, :mod:`~mscrs_core.models.context_mapping`) from the training-context graph;
   T_tilde_s = AvgPool([Reshape(e_hat_s), T_hat_s]) = (Reshape(e_hat_s) + T_hat_s) / 2 (Eq. 27).
4. c_s = [T_tilde_s; O_cov; s] (Eq. 28) into the FROZEN backbone (as in the recommendation task: no backbone
   weight is trained; the trainable parameters theta_gen are the graph encoder, W1/W2, O_cov, the mapping MLP and
   reshape, and the placeholder embedding below).
5. Eq. (29): negative log-likelihood of the response tokens given c_s and the preceding tokens.
   ``loss_reduction="context"`` (default, Eq. 29 as printed): sum over a response's tokens, mean over contexts;
   ``"token"``: mean over all response tokens (Hugging Face ``labels`` semantics, the authors' code).

Ablations (Fig. 4 c, d): ``use_enhanced_entities=False`` ("w/o -s": Q_s instead of Q_hat_s, in the slots and in
the context graph), ``use_context_mapping=False`` ("w/o -c": T_tilde_s = T_hat_s), both off ("w/o -all").

``graph_prompt="authors_code"``: MSCRS-main's conversation code computes the graph embeddings and then never
feeds them to the LM; here T_hat_s = T (no V_tilde_s, so the graph encoder is not run at all, which gives the same
output). Combine with ``loss_on="all"`` for their collator (labels on context and response tokens).

``prompt_position`` (where the soft prompt goes):

* ``"prefix"`` (default, Eq. 28 as printed, the ``paper`` profile): c_s = [T_tilde_s; O_cov; s], one pass of the
  frozen backbone over prompt, context and response, the prompt's gradient flowing through the whole context.
* ``"suffix"`` (the CPU order): [s; T_tilde_s; O_cov; "System:"; response]. The context's key/value states do not
  depend on any trainable parameter, so they are computed ONCE without autograd
  (:func:`~mscrs_core.models.context_states.encode_context`, or looked up in
  :attr:`MSCRSGenerator.state_bank`, a :class:`~mscrs_core.models.context_states.ContextStateBank`) and only the
  prompt, "System:" and response positions run with autograd
  (:func:`~mscrs_core.models.context_states.run_after_context`). Loss and gradients equal one uncached pass over
  the same sequence (:meth:`MSCRSGenerator.suffix_hidden` with ``cached=False``; tests check it). T (Eq. 27's
  text embedding) is still the mean input embedding of the context tokens. The context is embedded with the
  backbone's own (frozen) placeholder row, so cached states stay valid while the placeholder vector trains; the
  trainable vector acts on the response side (inputs and the placeholder's logit) and
  :meth:`MSCRSGenerator.sync_placeholder` leaves the backbone untouched (generation substitutes it itself,
  :mod:`~mscrs_core.models.generate`).

``prompt_injection`` (how the prompt enters the frozen backbone; the paper and the authors' code disagree):

* ``"inputs"`` (default, Eq. 28 as printed): the prompt vectors are input embeddings at their positions.
* ``"layers"`` (the authors' code, UniCRS's prefix tuning; ``suffix`` order only): the same prompt vectors are mapped
  by a :class:`~mscrs_core.models.layer_prompt.LayerPrompt` to keys and values of every layer, appended to the
  cached context states (keys rotated to the positions right after the context); only "System:" and the response
  run as inputs (:meth:`MSCRSGenerator.after_context`).

The ``<movie>`` placeholder is ONE token: it is added to the tokenizer as a special token and the frozen backbone
gets a matching embedding row (``resize_token_embeddings``). Its value is a trainable vector (initialised to the
mean of the existing input embeddings; a second vector, initialised to the mean output embedding, when input and
output embeddings are not tied) substituted at input positions and used for the placeholder's logit in the loss;
:meth:`MSCRSGenerator.sync_placeholder` copies it into the backbone's row(s) before ``generate``. Every other
backbone weight stays frozen.
"""
from __future__ import annotations

from mscrs_core.models.frozen import FrozenBackboneMixin

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mscrs_core.data.samples import MOVIE_PLACEHOLDER
from mscrs_core.models.backbone import decoder_of
from mscrs_core.models.context_states import PROMPT_POSITIONS, ContextStates, encode_context, run_after_context
from mscrs_core.models.context_mapping import ContextBank, ContextFeaturizer, CorrelationSemanticMapping
from mscrs_core.models.conversation_collate import LOSS_ON, ConversationCollator
from mscrs_core.models.enhanced_entities import EnhancedEntities, EntityEnhancer
from mscrs_core.models.layer_prompt import LayerPrompt, append_layer_prompt, check_prompt_injection
from mscrs_core.models.pretrained import PretrainedMixin, with_current_names
from mscrs_core.models.prompt_encoder import PromptEncoder, assemble_inputs

#: values of :attr:`ConversationConfig.graph_prompt` (what the graphs contribute to the prompt)
GRAPH_PROMPTS = ("paper", "authors_code")
LOSS_REDUCTIONS = ("context", "token")


@dataclass
class ConversationConfig:
    """Hyper-parameters and ablation switches of :class:`MSCRSGenerator` (saved with checkpoints)."""

    #: former field name -> its name now; configs saved under the former name still load (:meth:`from_dict`,
    #: ``from_pretrained``). ``graph_prompt`` was ``graph_variant``, a name the recommendation run uses for the
    #: graph recipe
    FORMER_NAMES: ClassVar[dict[str, str]] = {"graph_variant": "graph_prompt"}

    max_entities: int = 32  # q
    n_entity_prompt: int = 4  # p, length of T_tilde_s
    n_task_prompt: int = 10  # length of O_cov
    use_enhanced_entities: bool = True  # Eq. (25); False = "w/o -s"
    use_context_mapping: bool = True  # Eq. (26)-(27); False = "w/o -c"
    graph_prompt: str = "paper"  # "paper": T_hat_s = T + V_tilde_s | "authors_code": T_hat_s = T (graphs discarded)
    max_neighbours: int | None = 32  # Eq. (25) cap (see enhanced_entities)
    mapping_k: int = 10  # top-k of the context graph
    mapping_mlp_hidden: int = 256
    loss_on: str = "response"  # "response" (Eq. 29) | "all" (authors' collator)
    loss_reduction: str = "context"  # "context" (Eq. 29) | "token"
    fuse_weight: float = 0.0  # Eq. (29) has no L_fuse; > 0 adds delta * L_fuse (Eq. 18)
    tau: float = 0.07
    max_context_length: int = 200
    max_response_length: int = 80
    text_embedder: str = "minilm"  # E_s^(0): "minilm" | "hf:<model>" | "hashing:<dim>"
    placeholder: str = MOVIE_PLACEHOLDER
    prompt_position: str = "prefix"  # "prefix" (Eq. 28: [prompt; s]) | "suffix" ([s; prompt], cached context states)
    # "inputs" (Eq. 28: the prompt as input embeddings) | "layers" (the authors' code: every layer's keys and values,
    # :mod:`~mscrs_core.models.layer_prompt`; suffix order only)
    prompt_injection: str = "inputs"

    def __post_init__(self) -> None:
        if self.prompt_position not in PROMPT_POSITIONS:
            raise ValueError(f"prompt_position: expected one of {PROMPT_POSITIONS}, got {self.prompt_position!r}")
        if self.prompt_position == "suffix" and self.loss_on != "response":
            raise ValueError("prompt_position='suffix' supervises the response only (loss_on='response')")
        check_prompt_injection(self.prompt_injection, self.prompt_position)
        if self.graph_prompt not in GRAPH_PROMPTS:
            raise ValueError(f"graph_prompt: expected one of {GRAPH_PROMPTS}, got {self.graph_prompt!r}")
        if self.loss_on not in LOSS_ON:
            raise ValueError(f"loss_on: expected one of {LOSS_ON}, got {self.loss_on!r}")
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction: expected one of {LOSS_REDUCTIONS}, got {self.loss_reduction!r}")
        if self.fuse_weight < 0:
            raise ValueError(f"fuse_weight: expected >= 0, got {self.fuse_weight}")

    @property
    def ablation(self) -> str:
        """Fig. 4(c, d) name of this configuration."""
        s, c = self.use_enhanced_entities, self.use_context_mapping
        return "MSCRS" if s and c else "w/o -s" if c else "w/o -c" if s else "w/o -all"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ConversationConfig":
        """The config :meth:`to_dict` wrote (fields saved under a name of :attr:`FORMER_NAMES` accepted)."""
        d = with_current_names(cls, d, "ConversationConfig")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"ConversationConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


@dataclass
class ConversationOutput:
    loss: Tensor  # L_gen (+ delta * L_fuse)
    nll: Tensor  # L_gen, Eq. (29)
    fuse_loss: Tensor
    n_tokens: int  # supervised tokens in the batch
    nll_sum: float = 0.0  # summed token NLL (for corpus-level token means / perplexity)
    n_contexts: int = 0  # contexts with at least one supervised token


def add_placeholder_token(tokenizer, placeholder: str = MOVIE_PLACEHOLDER) -> int:
    """Make ``placeholder`` one special token of ``tokenizer`` (idempotent); returns its id."""
    if placeholder not in tokenizer.get_vocab():
        tokenizer.add_tokens([placeholder], special_tokens=True)
    ids = tokenizer(placeholder, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"tokenizer: {placeholder!r} does not encode to one token after adding it ({ids})")
    return int(ids[0])


class MSCRSGenerator(PretrainedMixin, FrozenBackboneMixin, nn.Module):
    """Conversation model of MSCRS (module docstring): ``forward(batch) -> ConversationOutput`` (Eq. 29).

    Args:
        graph_encoder: ``forward() -> E_final [K, d]`` with ``neighbours(ids)`` (a ``SemanticGraphEncoder``);
            trained jointly (pass a copy of the recommender's to start from it).
        backbone: frozen causal LM; its token embeddings are resized to hold the placeholder.
        tokenizer: the backbone's tokenizer; the placeholder is added to it.
        config: :class:`ConversationConfig`.
        bank: the training-context bank (required when ``use_context_mapping``).
        embedder: text embedder for contexts outside the bank (required when ``use_context_mapping``).
        entity_dim: d; inferred by calling ``graph_encoder()`` once when omitted.

    ``save_pretrained(dir)`` / ``MSCRSGenerator.from_pretrained(dir)`` (:mod:`~mscrs_core.models.pretrained`)
    write and rebuild it: config, trainable weights, graphs, tokenizer (with ``<movie>``) and the context bank;
    the backbone is reloaded by name.
    """

    model_type = "mscrs_conversation"
    config_class = ConversationConfig

    def __init__(self, graph_encoder: nn.Module, backbone: nn.Module, tokenizer,
                 config: ConversationConfig | None = None, *, bank: ContextBank | None = None, embedder=None,
                 entity_dim: int | None = None):
        super().__init__()
        cfg = config or ConversationConfig()
        self.config = cfg
        if any(p.requires_grad for p in backbone.parameters()):
            raise ValueError("backbone: expected a frozen model (use load_backbone or backbone.requires_grad_(False))")
        self.graph_encoder, self.backbone, self.tokenizer = graph_encoder, backbone, tokenizer
        self.placeholder_id = add_placeholder_token(tokenizer, cfg.placeholder)
        self._resize_backbone()
        hidden = backbone.config.hidden_size
        emb = backbone.get_input_embeddings().weight
        n_old = self._n_old_rows
        emb_std = float(emb[:n_old].detach().float().std())
        # trainable placeholder row(s), see the module docstring
        self.placeholder_in = nn.Parameter(emb[:n_old].detach().float().mean(0).clone())
        out = backbone.get_output_embeddings()
        self.tied = out is None or out.weight.data_ptr() == emb.data_ptr()
        self.placeholder_out = None if self.tied else nn.Parameter(out.weight[:n_old].detach().float().mean(0).clone())
        if entity_dim is None:
            with torch.no_grad():
                entity_dim = int(graph_encoder().shape[1])
        self.prompt_encoder = PromptEncoder(
            entity_dim, hidden, max_entities=cfg.max_entities, n_entity_prompt=cfg.n_entity_prompt,
            n_task_prompt=cfg.n_task_prompt, tau=cfg.tau, embedding_std=emb_std,
        )  # its task prompt is O_cov (Eq. 28)
        #: ``prompt_injection="layers"``: the map from prompt vectors to every layer's keys and values
        self.layer_prompt = LayerPrompt.for_backbone(backbone) if cfg.prompt_injection == "layers" else None
        self.enhancer = EntityEnhancer(graph_encoder.neighbours, max_neighbours=cfg.max_neighbours,
                                       enabled=cfg.use_enhanced_entities)
        self.mapping = None
        self.featurizer = None
        if cfg.use_context_mapping:
            if bank is None or embedder is None:
                raise ValueError("use_context_mapping=True needs bank= (ContextBank of the training contexts) "
                                 "and embedder= (the text embedder that built it)")
            self.mapping = CorrelationSemanticMapping(bank.dim, cfg.n_entity_prompt, hidden,
                                                      mlp_hidden=cfg.mapping_mlp_hidden, embedding_std=emb_std)
            self.featurizer = ContextFeaturizer(bank, embedder, self.enhancer)
        self.bank, self.embedder = bank, embedder
        #: ``prompt_position="suffix"``: a ContextStateBank to take context states from (None: encode per batch)
        self.state_bank = None
        #: use :attr:`state_bank` in training mode too (else only in eval mode: validation loss, generation)
        self.state_bank_in_training = True

    # ------------------------------------------------------------------ placeholder row
    def _resize_backbone(self) -> None:
        n_rows = int(self.backbone.get_input_embeddings().weight.shape[0])
        ph = self.placeholder_id
        # rows whose mean initialises the placeholder: every real token before it
        self._n_old_rows = min(n_rows, ph) if ph > 0 else n_rows
        if ph >= n_rows:
            self.backbone.resize_token_embeddings(ph + 1, mean_resizing=False)
            self.backbone.requires_grad_(False)  # resizing creates fresh (trainable) parameters
        with torch.no_grad():
            w = self.backbone.get_input_embeddings().weight
            w[ph] = w[: self._n_old_rows].mean(0)
            out = self.backbone.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != w.data_ptr():
                out.weight[ph] = out.weight[: self._n_old_rows].mean(0)

    @torch.no_grad()
    def sync_placeholder(self) -> None:
        """Copy the trained placeholder vector(s) into the backbone's row(s) (before ``generate``).

        ``prompt_position="suffix"``: nothing is copied (cached context states were computed with the backbone's
        row; generation substitutes the trained vectors itself)."""
        if self.config.prompt_position == "suffix":
            return
        w = self.backbone.get_input_embeddings().weight
        w[self.placeholder_id] = self.placeholder_in.to(w.dtype)
        out = self.backbone.get_output_embeddings()
        if out is not None and self.placeholder_out is not None:
            out.weight[self.placeholder_id] = self.placeholder_out.to(out.weight.dtype)

    # ------------------------------------------------------------------ state handling
    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_trainable_state_dict(state)
        self.sync_placeholder()

    def _save_pretrained_files(self, directory) -> None:
        if self.bank is not None:
            self.bank.save(directory)

    @classmethod
    def _build_pretrained(cls, directory, config, graph_encoder, backbone, tokenizer, extras, *, embedder=None):
        """The untrained model of a :meth:`save_pretrained` folder; ``embedder`` defaults to
        ``make_text_embedder(config.text_embedder)``."""
        from mscrs_core.models.context_mapping import make_text_embedder

        bank = None
        if config.use_context_mapping:
            bank = ContextBank.load(directory)
            embedder = embedder or make_text_embedder(config.text_embedder)
        return cls(graph_encoder, backbone, tokenizer, config, bank=bank, embedder=embedder)

    # ------------------------------------------------------------------ inputs
    def enhanced(self, sample) -> EnhancedEntities:
        """Q_hat_s of a sample (Eq. 25)."""
        return self.enhancer(sample.context_entities)

    def slot_entities(self, sample) -> tuple[int, ...]:
        """Entity ids for the q slots: Q_hat_s in slot order (plain Q_s for "w/o -s")."""
        return self.enhanced(sample).slot_order()

    def make_collator(self, generation: bool = False) -> ConversationCollator:
        """The collator matching this model's config (entity slots and Eq. 26 features bound)."""
        cfg = self.config
        return ConversationCollator(self.tokenizer, max_context_length=cfg.max_context_length,
                                    max_response_length=cfg.max_response_length, max_entities=cfg.max_entities,
                                    loss_on=cfg.loss_on, generation=generation, entities_fn=self.slot_entities,
                                    features_fn=self.featurizer, layout=cfg.prompt_position)

    def embed_tokens(self, input_ids: Tensor) -> Tensor:
        """Backbone input embeddings with the trainable placeholder vector at placeholder positions."""
        emb = self.backbone.get_input_embeddings()(input_ids)
        is_ph = (input_ids == self.placeholder_id).unsqueeze(-1)
        return torch.where(is_ph, self.placeholder_in.to(emb.dtype), emb)

    def build_prompt(self, batch: dict[str, Tensor], token_embeds: Tensor,
                     ctx_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """[T_tilde_s; O_cov] (the soft part of Eq. 28) and L_fuse. Returns ([B, p + n, H], scalar).

        ``token_embeds``/``ctx_mask``: the tokens T is pooled over and their mask (default: the batch's
        ``context_mask``, else its ``attention_mask``)."""
        cfg = self.config
        if ctx_mask is None:
            ctx_mask = batch.get("context_mask", batch["attention_mask"])
        p = cfg.n_entity_prompt
        if cfg.graph_prompt == "authors_code":
            t_s = PromptEncoder.text_embedding(token_embeds, ctx_mask)
            t_hat = t_s.unsqueeze(1).expand(-1, p, -1)  # graph embeddings discarded: T_hat_s = T
            fuse = token_embeds.new_zeros(())
        else:
            table = self.graph_encoder()  # E_final, Eq. (16)
            out = self.prompt_encoder(table[batch["entity_ids"]], batch["entity_mask"], token_embeds, ctx_mask)
            t_hat, fuse = out.prompt[:, :p], out.fuse_loss  # T_hat_s = T + V_tilde_s
        if self.mapping is not None:
            e_hat = self.mapping(batch["ctx_emb"].to(t_hat.dtype), batch["nb_emb"].to(t_hat.dtype),
                                 batch["nb_weight"].to(t_hat.dtype))
            t_tilde = (e_hat + t_hat) / 2  # Eq. (27)
        else:
            t_tilde = t_hat
        o_cov = self.prompt_encoder.task_prompt.unsqueeze(0).expand(t_tilde.shape[0], -1, -1).to(t_tilde.dtype)
        return torch.cat([t_tilde, o_cov], dim=1), fuse

    def inputs_embeds(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """c_s = [T_tilde_s; O_cov; s] (Eq. 28): (inputs_embeds, attention_mask, position_ids, L_fuse)."""
        if self.config.prompt_position == "suffix":
            raise ValueError("inputs_embeds: prompt_position='suffix' has no single input sequence; "
                             "use suffix_inputs / suffix_hidden")
        token_embeds = self.embed_tokens(batch["input_ids"])
        prompt, fuse = self.build_prompt(batch, token_embeds)
        embeds, mask, positions = assemble_inputs(prompt, token_embeds, batch["attention_mask"])
        return embeds, mask, positions, fuse

    @property
    def prompt_length(self) -> int:
        return self.config.n_entity_prompt + self.config.n_task_prompt

    @property
    def prompt_positions(self) -> int:
        """Input positions the soft prompt occupies in the hidden states (none when it enters as keys and values)."""
        return 0 if self.layer_prompt is not None else self.prompt_length

    # ------------------------------------------------------------------ loss
    # ------------------------------------------------------------------ suffix order
    def context_states(self, context_ids: Tensor, context_mask: Tensor) -> ContextStates:
        """Key/value states of left-padded contexts: from :attr:`state_bank` when set, else encoded now."""
        if self.state_bank is not None and (self.state_bank_in_training or not self.training):
            return self.state_bank.lookup(context_ids, context_mask).to(context_ids.device)
        return encode_context(self.backbone, context_ids, context_mask)

    def suffix_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The positions after the context: ([T_tilde_s; O_cov; tail] embeddings [B, P + S, H], their mask,
        L_fuse); the tail is the batch's ``input_ids`` ("System:" and, in training, the response)."""
        ctx_embeds = self.embed_tokens(batch["context_ids"])
        prompt, fuse = self.build_prompt(batch, ctx_embeds, batch["context_mask"])
        tail = self.embed_tokens(batch["input_ids"])
        embeds = torch.cat([prompt.to(tail.dtype), tail], dim=1)
        ones = batch["attention_mask"].new_ones(prompt.shape[0], prompt.shape[1])
        return embeds, torch.cat([ones, batch["attention_mask"]], dim=1), fuse

    def after_context(self, batch: dict[str, Tensor], states: ContextStates
                      ) -> tuple[ContextStates, Tensor, Tensor, Tensor]:
        """What runs after a batch's context states: (the states to attend to, embeddings [B, S', H], their mask,
        L_fuse). With ``prompt_injection="inputs"`` the states are the context's and the embeddings
        :meth:`suffix_inputs`'s; with ``"layers"`` the prompt becomes every layer's keys and values (rotated to the
        positions right after the context) appended to the context's, and only the tail runs as inputs."""
        embeds, mask, fuse = self.suffix_inputs(batch)
        if self.layer_prompt is None:
            return states, embeds, mask, fuse
        n = self.prompt_length
        prompt, embeds, mask = embeds[:, :n], embeds[:, n:], mask[:, n:]
        return append_layer_prompt(self.backbone, self.layer_prompt, states, prompt), embeds, mask, fuse

    def suffix_hidden(self, batch: dict[str, Tensor], cached: bool = True) -> tuple[Tensor, Tensor]:
        """Last hidden states of the positions after the context, [B, P + S, H] ([B, S, H] when the prompt enters
        as keys and values), and L_fuse.

        ``cached=True``: context states once without autograd, then :func:`run_after_context`; ``False``: one
        uncached pass over [context; prompt; tail] (the reference the cached path must equal; there is no such pass
        when the prompt enters every layer, ``prompt_injection="layers"``)."""
        ctx_ids, ctx_mask = batch["context_ids"], batch["context_mask"]
        if cached:
            states, embeds, mask, fuse = self.after_context(batch, self.context_states(ctx_ids, ctx_mask))
            return run_after_context(self.backbone, states, embeds, mask), fuse
        if self.layer_prompt is not None:
            raise ValueError("suffix_hidden(cached=False): a prompt given as every layer's keys and values has no "
                             "single uncached pass")
        embeds, mask, fuse = self.suffix_inputs(batch)
        ctx = self.backbone.get_input_embeddings()(ctx_ids)  # the backbone's own rows, as in encode_context
        full = torch.cat([ctx, embeds.to(ctx.dtype)], dim=1)
        full_mask = torch.cat([ctx_mask.long(), mask.long()], dim=1)
        positions = (full_mask.cumsum(1) - 1).clamp_min(0)
        hidden = decoder_of(self.backbone)(inputs_embeds=full, attention_mask=full_mask, position_ids=positions,
                                           use_cache=False).last_hidden_state
        return hidden[:, ctx_ids.shape[1]:], fuse

    def token_logits(self, hidden: Tensor) -> Tensor:
        """Vocabulary logits (fp32) with the trainable placeholder vector as the placeholder's output row."""
        logits = self.backbone.get_output_embeddings()(hidden).float()
        ph_vec = self.placeholder_in if self.placeholder_out is None else self.placeholder_out
        ph_logit = hidden.float() @ ph_vec.float()
        col = torch.arange(logits.shape[-1], device=logits.device) == self.placeholder_id
        return torch.where(col, ph_logit.unsqueeze(-1), logits)

    # ------------------------------------------------------------------ loss
    def forward(self, batch: dict[str, Tensor]) -> ConversationOutput:
        """Eq. (29) on a training batch from :meth:`make_collator`."""
        labels = batch["labels"]
        pad = labels.new_full((labels.shape[0], self.prompt_positions), -100)
        # prefix: [pads, prompt, tokens]; suffix: [prompt, tail] ([tail] when the prompt enters as keys and values)
        labels = torch.cat([pad, labels], dim=1)
        if self.config.prompt_position == "suffix":
            hidden, fuse = self.suffix_hidden(batch)
        else:
            embeds, mask, positions, fuse = self.inputs_embeds(batch)
            hidden = decoder_of(self.backbone)(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                               use_cache=False).last_hidden_state
        target = labels[:, 1:]
        rows, cols = (target != -100).nonzero(as_tuple=True)
        if rows.numel() == 0:
            raise ValueError("batch: no supervised token (every label is -100)")
        h = hidden[:, :-1][rows, cols]  # states that predict the supervised tokens only
        y = target[rows, cols]
        logits = self.token_logits(h)  # trainable placeholder row (output side)
        nll_tok = F.cross_entropy(logits, y, reduction="none")
        if self.config.loss_reduction == "token":
            nll = nll_tok.mean()
        else:  # Eq. (29): sum over each response's tokens, mean over contexts
            per_ctx = torch.zeros(labels.shape[0], device=nll_tok.device).index_add(0, rows, nll_tok)
            nll = per_ctx[torch.unique(rows)].mean()
        loss = nll + self.config.fuse_weight * fuse if self.config.fuse_weight > 0 else nll
        return ConversationOutput(loss, nll, fuse.detach(), int(rows.numel()), float(nll_tok.detach().sum()),
                                  int(torch.unique(rows).numel()))
