"""Eager attention for grouped-query backbones without copying keys and values (``"eager_grouped"``).

SmolLM2-135M (the CPU default backbone) has 9 query heads and 3 key/value heads (grouped-query attention,
Ainslie et al., 2023). Hugging Face's eager attention first copies every key and value head to the 3 query heads
that read it (``repeat_kv``), then multiplies. During decoding that copy is most of the work: each new token
copies the whole cache, in every layer (INSPIRED test turns, SmolLM2, one thread: ``repeat_kv`` took 13.6 s of a
46 s decoding profile). This function computes the same thing without the copy: the ``g`` query heads that share
key/value head ``j`` are stacked along the query axis,

.. math::

    \\mathrm{softmax}\\big(s\\,[Q_{jg}; \\dots; Q_{jg+g-1}] K_j^\\top + M\\big) V_j ,

one product per key/value head instead of one per query head, with the mask ``M`` broadcast over the group.
The operations are eager attention's, in its order (scaled product, additive mask, softmax in float32, product
with the values), so the result equals it: exactly for several query positions, and to float rounding
(about 1e-7) for the one-position products of decoding, where the batched matrix-vector kernel of the copy and
the small matrix product here add in a different order (``tests/test_models_attention.py``).

:func:`load_backbone <mscrs_core.models.backbone.load_backbone>` switches a backbone loaded with
``attn_implementation="eager"`` to it when the model has grouped heads and is of a family whose eager attention is
Llama's (:data:`GROUPED_FAMILIES`); every other model keeps its own eager attention. It is registered with
Hugging Face's ``AttentionInterface`` (and eager's mask with ``AttentionMaskInterface``), so it is selected as
any other implementation is, by name.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

#: the name the function is registered under (``model.set_attn_implementation(GROUPED_EAGER)``)
GROUPED_EAGER = "eager_grouped"

#: model types whose eager attention is Llama's (scaled product, additive mask, float32 softmax; no soft-capping
#: or attention sinks), so the grouped function computes the same attention
GROUPED_FAMILIES = ("llama", "mistral", "qwen2")


def grouped_eager_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                            attention_mask: Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                            **kwargs) -> tuple[Tensor, Tensor]:
    """Eager attention with key/value heads shared by groups of query heads, without repeating them.

    Args:
        query: ``[B, H, T, D]``; key, value: ``[B, H_kv, S, D]`` with ``H`` a multiple of ``H_kv`` (query head
            ``h`` reads key/value head ``h // (H / H_kv)``, as ``repeat_kv`` arranges them).
        attention_mask: eager's additive mask ``[B, 1, T, S]`` (or None); a boolean mask (True = attend) is
            accepted too.
        scaling: the factor on the product (default ``D ** -0.5``).

    Returns:
        ``(output [B, T, H, D], weights [B, H, T, S])``, as Hugging Face's eager attention returns them.
    """
    if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
        raise ValueError(f"{GROUPED_EAGER}: soft-capped attention and attention sinks are not supported")
    b, h, t, d = query.shape
    kv_heads, s = key.shape[1], key.shape[2]
    if h % kv_heads:
        raise ValueError(f"{GROUPED_EAGER}: {h} query heads are not a multiple of {kv_heads} key/value heads")
    g = h // kv_heads
    scale = d ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query.reshape(b, kv_heads, g * t, d), key.transpose(2, 3)) * scale
    if attention_mask is not None:
        mask = attention_mask[:, :, :, :s]
        weights = weights.view(b, kv_heads, g, t, s)
        if mask.dtype == torch.bool:
            weights = weights.masked_fill(~mask.unsqueeze(2), torch.finfo(weights.dtype).min)
        else:
            weights = weights + mask.unsqueeze(2)
        weights = weights.view(b, kv_heads, g * t, s)
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).view(b, h, t, d)
    return out.transpose(1, 2).contiguous(), weights.view(b, h, t, s)


def register() -> None:
    """Make :data:`GROUPED_EAGER` a Hugging Face attention implementation (with eager's mask); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(GROUPED_EAGER, grouped_eager_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(GROUPED_EAGER, eager_mask)


def has_grouped_heads(model: nn.Module) -> bool:
    """Whether ``model`` is of a :data:`GROUPED_FAMILIES` type with fewer key/value heads than query heads."""
    c = getattr(model, "config", None)
    heads, kv = getattr(c, "num_attention_heads", None), getattr(c, "num_key_value_heads", None)
    return getattr(c, "model_type", None) in GROUPED_FAMILIES and bool(heads and kv and kv < heads)


def use_grouped_eager(model: nn.Module) -> bool:
    """Switch a grouped-query model running eager attention to :func:`grouped_eager_attention` (the same
    attention, without copying keys and values). Returns whether it switched; other models are left alone."""
    c = getattr(model, "config", None)
    if getattr(c, "_attn_implementation", None) != "eager" or not has_grouped_heads(model):
        return False
    register()
    model.set_attn_implementation(GROUPED_EAGER)
    return True


register()
