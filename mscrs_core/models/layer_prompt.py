"""The authors' code's way into the language model: the soft prompt as every layer's keys and values.

The paper feeds the conversation prompt to the PLM as input embeddings (Eq. 28: ``c_s = [T_tilde_s; O_cov; s]``).
The authors' code (inherited from UniCRS, ``KGPrompt`` in ``model_prompt.py``) does prefix tuning instead: each
prompt vector goes through a residual two-layer MLP (``prompt_proj1``) and a linear map (``prompt_proj2``) to a
key and a value for EVERY layer, handed to the frozen PLM as ``past_key_values``. At 100M parameters this is the
more expressive of the two (Li and Liang 2021; Lester et al. 2021 find input-only prompts weak at this scale).
:class:`LayerPrompt` is that map; ``ConversationConfig.prompt_injection="layers"`` uses it.

Shapes: B batch, P prompt positions, H hidden size, L layers, h key/value heads, d head size.

Rotary position embeddings: a learned key carries no position, and a RoPE query at position m would then see it
through a rotation that depends on m (that is, on the length of the context). The keys are therefore rotated as
if the prompt sat at the positions it occupies (right after the context in the ``suffix`` order), so that a
response token sees each prompt key at a fixed relative distance, exactly like a prompt given as input
embeddings. Models with absolute positions (GPT-2, the authors' DialoGPT) add positions at the input and need
no rotation; :func:`rotate_keys` leaves their keys alone.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mscrs_core.models.backbone import decoder_of
from mscrs_core.models.context_states import ContextStates

#: how a soft prompt enters the frozen backbone: "inputs" (input embeddings, the paper's Eq. 19 and 28) |
#: "layers" (every layer's keys and values, the authors' code)
PROMPT_INJECTIONS = ("inputs", "layers")


def check_prompt_injection(injection: str, position: str) -> None:
    """ValueError unless ``injection`` is one of :data:`PROMPT_INJECTIONS` and fits the prompt ``position`` (the
    layer prompt follows cached context states: ``suffix`` only). Shared by the recommender's and generator's
    configurations."""
    if injection not in PROMPT_INJECTIONS:
        raise ValueError(f"prompt_injection: expected one of {PROMPT_INJECTIONS}, got {injection!r}")
    if injection == "layers" and position != "suffix":
        raise ValueError("prompt_injection='layers' is implemented for prompt_position='suffix' only")


def kv_shape(config) -> tuple[int, int, int]:
    """(layers, key/value heads, head size) of a decoder's attention, from its ``config``."""
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return layers, kv_heads, head_dim


class LayerPrompt(nn.Module):
    """Prompt vectors ``[B, P, H]`` -> keys and values ``[L, B, h, P, d]`` for every layer (the authors' code).

    ``x' = x + MLP(x)`` (``prompt_proj1``: H -> H/2 -> H with a ReLU), then one linear map to ``L * 2 * h * d``
    (``prompt_proj2``). The linear map starts at a tenth of PyTorch's default scale: the prompt's keys and values
    then start small beside the context's, so training starts near the frozen model's own distribution.
    """

    def __init__(self, hidden_size: int, n_layers: int, n_kv_heads: int, head_dim: int):
        super().__init__()
        self.n_layers, self.n_kv_heads, self.head_dim = n_layers, n_kv_heads, head_dim
        self.proj1 = nn.Sequential(nn.Linear(hidden_size, hidden_size // 2), nn.ReLU(),
                                   nn.Linear(hidden_size // 2, hidden_size))
        self.proj2 = nn.Linear(hidden_size, n_layers * 2 * n_kv_heads * head_dim)
        with torch.no_grad():
            self.proj2.weight.mul_(0.1)
            self.proj2.bias.zero_()

    @classmethod
    def for_backbone(cls, backbone: nn.Module) -> "LayerPrompt":
        """A layer prompt shaped for ``backbone``'s attention."""
        layers, kv_heads, head_dim = kv_shape(backbone.config)
        return cls(int(backbone.config.hidden_size), layers, kv_heads, head_dim)

    def forward(self, prompt: Tensor) -> tuple[Tensor, Tensor]:
        b, p, _ = prompt.shape
        x = prompt + self.proj1(prompt)
        kv = self.proj2(x).view(b, p, self.n_layers, 2, self.n_kv_heads, self.head_dim)
        kv = kv.permute(3, 2, 0, 4, 1, 5)  # [2, L, B, h, P, d]
        return kv[0], kv[1]


def rotate_keys(backbone: nn.Module, keys: Tensor, positions: Tensor) -> Tensor:
    """Keys ``[L, B, h, P, d]`` rotated to ``positions`` ``[B, P]`` with the backbone's rotary embedding (Llama-style
    ``rotate_half``); unchanged for a backbone without one (absolute positions)."""
    rope = getattr(decoder_of(backbone), "rotary_emb", None)
    if rope is None:
        return keys
    from transformers.models.llama.modeling_llama import rotate_half

    cos, sin = rope(keys, positions)  # [B, P, d]
    cos, sin = cos.to(keys.dtype).unsqueeze(1), sin.to(keys.dtype).unsqueeze(1)  # [B, 1, P, d]
    return keys * cos + rotate_half(keys) * sin


def append_layer_prompt(backbone: nn.Module, layer_prompt: LayerPrompt, states: ContextStates,
                        prompt: Tensor) -> ContextStates:
    """The context's states with the prompt's keys and values ``[L, B, h, P, d]`` appended after them.

    The keys are rotated to the positions right after each row's context (:func:`rotate_keys`); the returned
    mask counts the P prompt positions as real, so whatever runs next (:func:`~mscrs_core.models.context_states.
    run_after_context`) continues at position ``context length + P``. ``prompt``: ``[B, P, H]`` prompt vectors."""
    n = prompt.shape[1]
    keys, values = layer_prompt(prompt.float())
    lengths = states.length.to(prompt.device)
    keys = rotate_keys(backbone, keys, lengths.unsqueeze(1) + torch.arange(n, device=prompt.device))
    dtype = next(backbone.parameters()).dtype
    ctx_mask = states.attention_mask.to(prompt.device).long()
    return ContextStates(torch.cat([states.keys.to(prompt.device, dtype), keys.to(dtype)], dim=3),
                         torch.cat([states.values.to(prompt.device, dtype), values.to(dtype)], dim=3),
                         torch.cat([ctx_mask, ctx_mask.new_ones(ctx_mask.shape[0], n)], dim=1))
