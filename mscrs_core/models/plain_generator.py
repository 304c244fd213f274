"""The frozen backbone alone, in the generator's decoding protocol: Table 3's "plain backbone" row in the ``suffix``
order (no soft prompt, no training).

:func:`~mscrs_core.models.generate.generate_suffix` decodes any object that gives the context's key/value states,
the positions after the context and the vocabulary logits. :class:`PlainGenerator` gives them for the backbone
alone: after the context ``s`` it reads only the response prefix ``"System:"`` of the collator, so it continues
the dialog as the trained generator does, minus the prompt. Its context states come from the same
:class:`~mscrs_core.models.context_states.ContextStateBank` files as the trained generator's (same backbone, split
and context budget), so the plain row re-encodes no context the book has already encoded; and greedy decoding
drops finished rows from the batch, which Hugging Face ``generate`` does not.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mscrs_core.models.context_states import ContextStates, encode_context
from mscrs_core.models.conversation_collate import ConversationCollator


@dataclass(frozen=True)
class PlainConfig:
    """What the decoding and the state bank read from a generator's config."""

    max_context_length: int = 200
    max_response_length: int = 48
    max_entities: int = 1
    prompt_position: str = "suffix"


class PlainGenerator:
    """The backbone with nothing trained around it, decoded by
    :func:`~mscrs_core.models.generate.generate_suffix` (greedy or beam, the same rules as the trained rows)."""

    def __init__(self, backbone: nn.Module, tokenizer, config: PlainConfig | None = None):
        self.backbone, self.tokenizer, self.config = backbone, tokenizer, config or PlainConfig()
        self.state_bank = None
        self.training = False

    def eval(self) -> "PlainGenerator":
        return self

    def train(self, mode: bool = True) -> "PlainGenerator":  # nothing trains; kept for the decoding protocol
        return self

    def make_collator(self, generation: bool = True) -> ConversationCollator:
        c = self.config
        return ConversationCollator(self.tokenizer, max_context_length=c.max_context_length,
                                    max_response_length=c.max_response_length, max_entities=c.max_entities,
                                    generation=generation, layout="suffix")

    def context_states(self, context_ids: Tensor, context_mask: Tensor) -> ContextStates:
        """From :attr:`state_bank` when set, else encoded now."""
        if self.state_bank is not None:
            return self.state_bank.lookup(context_ids, context_mask).to(context_ids.device)
        return encode_context(self.backbone, context_ids, context_mask)

    def embed_tokens(self, input_ids: Tensor) -> Tensor:
        return self.backbone.get_input_embeddings()(input_ids)

    def suffix_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The positions after the context: the response prefix alone (no prompt)."""
        return self.embed_tokens(batch["input_ids"]), batch["attention_mask"], torch.zeros(())

    def after_context(self, batch: dict[str, Tensor], states: ContextStates
                      ) -> tuple[ContextStates, Tensor, Tensor, Tensor]:
        """The context's states unchanged and :meth:`suffix_inputs` (the decoding protocol's hook)."""
        return (states, *self.suffix_inputs(batch))

    def token_logits(self, hidden: Tensor) -> Tensor:
        return self.backbone.get_output_embeddings()(hidden).float()
