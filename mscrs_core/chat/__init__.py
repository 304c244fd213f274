"""``mscrs chat``: talk to a trained MSCRS (recommender + conversation model) from a saved checkpoint.

The package's modules, each with its seam:

* :mod:`.checkpoint`: the checkpoint folder; :func:`save_chat_checkpoint` writes it (each model through its
  ``save_pretrained``: config, safetensors weights and graphs, tokenizer), :func:`load_chat_checkpoint` reads it
  into a :class:`ChatBundle`;
* :mod:`.legacy`: reading checkpoints of the previous format (``mscrs-chat/1``, ``.pt`` files);
* :mod:`.session`: :class:`ChatSession`, one dialog (entity linking, the recommender's ranking, the generator's
  response with its ``<movie>`` slots filled, the Eq. (25) neighbours per graph), :class:`ChatTurn`,
  :func:`format_turn` and :func:`carried_over` (how much of a turn's list the previous turn already held);
* :mod:`.cli`: :func:`main`, the command line (``mscrs chat`` and ``python -m mscrs_core.chat``).

Everything public is importable from here, as before the split (``from mscrs_core.chat import ChatSession``).
"""
from mscrs_core.chat.checkpoint import (BACKBONE_DIR, FORMAT, GENERATOR_DIR, LEGACY_FORMAT, RECOMMENDER_DIR,
                                        ChatBundle, GraphInputs, load_chat_checkpoint, save_chat_checkpoint)
from mscrs_core.chat.cli import main
from mscrs_core.chat.session import ChatSession, ChatTurn, carried_over, format_turn, make_linker

__all__ = ["BACKBONE_DIR", "FORMAT", "GENERATOR_DIR", "LEGACY_FORMAT", "RECOMMENDER_DIR", "ChatBundle", "ChatSession",
           "ChatTurn", "GraphInputs", "carried_over", "format_turn", "load_chat_checkpoint", "main", "make_linker",
           "save_chat_checkpoint"]
