"""A dialog with a loaded chat checkpoint: :class:`ChatSession` answers one user utterance at a time
(:meth:`ChatSession.respond` returns a :class:`ChatTurn`), :func:`format_turn` prints a turn.

Each user utterance is linked to entities with :class:`~mscrs_core.data.linking.EntityLinker`
(:func:`make_linker`: ``from_vocabulary(dataset.entity2id)``, items included because users type movie names; a
vocabulary without DBpedia URIs, like the synthetic test set, is linked through its entity names). The dialog
history and the accumulated entities form a conversation sample; the recommender ranks the items, the generator
writes a response whose ``<movie>`` slots are filled from that ranking (items already mentioned are skipped), and
the Eq. (25) neighbours that entered the prompt are reported per graph, with the training contexts the
correlation semantic mapping retrieved (Eq. 26).
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mscrs_core.chat.checkpoint import ChatBundle, load_chat_checkpoint
from mscrs_core.data.samples import Sample
from mscrs_core.data.schema import RECOMMENDER, SEEKER


def make_linker(entity2id: dict[str, int], entity_names: dict[int, str], item_ids=()):
    """``EntityLinker.from_vocabulary(entity2id)``; vocabularies without DBpedia URIs fall back to the names. The
    items (``item_ids``) link only where the user capitalised their title: "a scary movie" is not *Scary Movie*."""
    from mscrs_core.data.linking import EntityLinker

    cased = {int(i) for i in item_ids}
    linker = EntityLinker.from_vocabulary(entity2id, cased=cased)
    if len(linker) == 0 and entity_names:
        fake = {f"<http://dbpedia.org/resource/{name.replace(' ', '_')}>": eid for eid, name in entity_names.items()}
        linker = EntityLinker.from_vocabulary(fake, cased=cased)
    return linker


@dataclass
class ChatTurn:
    """One exchange: the user's utterance, the response and what produced it."""

    user: str
    response: str
    raw_response: str
    recommended: list[tuple[int, str]]  # top-k of the recommender, (entity id, name)
    filled: list[tuple[int, str]]  # items that filled the <movie> slots
    linked: list[tuple[int, str]]  # entities linked in the user's utterance
    neighbours: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # Eq. (25), per graph
    retrieved_contexts: list[str] = field(default_factory=list)  # Eq. (26) training contexts (keys)


#: the chat's decoding (BlenderBot's): beam search that never repeats a trigram of the dialog so far. A generator
#: trained on short replies otherwise answers every turn with the sentence it has just said (chapter 8 showed
#: "I think I'll watch the movie." three times); Table 3 keeps the authors' greedy decoding
CHAT_CONTEXT_BLOCK_NGRAM = 3
CHAT_NUM_BEAMS = 4


class ChatSession:
    """A dialog with a loaded :class:`~mscrs_core.chat.checkpoint.ChatBundle`; keeps the history and the
    mentioned entities."""

    def __init__(self, bundle: ChatBundle, *, top_k: int = 5, generation=None, exclude_mentioned: bool = True):
        from mscrs_core.models.generate import GenerationConfig, recommender_ranker

        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k: expected an integer >= 1, got {top_k!r}")
        self.bundle, self.top_k, self.exclude_mentioned = bundle, top_k, exclude_mentioned
        self.generation = generation or GenerationConfig(num_beams=CHAT_NUM_BEAMS,
                                                         context_block_ngram=CHAT_CONTEXT_BLOCK_NGRAM)
        self.linker = make_linker(bundle.entity2id, bundle.entity_names, bundle.item_ids)
        self.items = set(bundle.item_ids)
        self.rank = recommender_ranker(bundle.recommender, top=max(top_k, 50)) if bundle.recommender else None
        self.reset()

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu", **kwargs) -> "ChatSession":
        return cls(load_chat_checkpoint(directory, device), **kwargs)

    def reset(self) -> None:
        self.history: list[tuple[str, str]] = []
        self.entities: list[int] = []
        self.mentioned_items: list[int] = []

    def _add(self, ids) -> None:
        for e in ids:
            if e not in self.entities:
                self.entities.append(int(e))
            if e in self.items and e not in self.mentioned_items:
                self.mentioned_items.append(int(e))

    def respond(self, utterance: str) -> ChatTurn:
        from mscrs_core.data.samples import display_title
        from mscrs_core.models.generate import fill_placeholders, generate_ids, decode

        gen, name = self.bundle.generator, self.bundle.name_of
        linked = self.linker.link(utterance).entities
        self.history.append((SEEKER, utterance))
        self._add(linked)
        sample = Sample("chat", len(self.history), tuple(self.history), tuple(self.entities), "", None,
                        tuple(self.mentioned_items))
        ranking = self.rank(sample) if self.rank else []
        batch = gen.make_collator(generation=True)([sample])
        raw = decode(gen.tokenizer, generate_ids(gen, batch, self.generation)[0])
        # a snapshot: the items this response names join mentioned_items below, and must still be listed as
        # this turn's recommendations
        excl = tuple(self.mentioned_items) if self.exclude_mentioned else ()
        # the slots take titles as people write them (and as the training responses had them before masking),
        # not DBpedia's "Split (2016 American film)"; the turn's lists keep the entity names
        text, used = fill_placeholders(raw, ranking, lambda e: display_title(name(e)), gen.config.placeholder, excl)
        enh = gen.enhanced(sample)
        retrieved = []
        if gen.bank is not None and "nb_index" in batch:
            retrieved = [gen.bank.keys[int(i)] for i in batch["nb_index"][0] if int(i) >= 0]
        self.history.append((RECOMMENDER, text))
        self._add(used)
        top = [e for e in ranking if not (self.exclude_mentioned and e in excl)][: self.top_k]
        return ChatTurn(utterance, text, raw, [(e, name(e)) for e in top], [(e, name(e)) for e in used],
                        [(e, name(e)) for e in linked],
                        {g: [(e, name(e)) for e in ids] for g, ids in enh.by_graph().items()}, retrieved)


def format_turn(turn: ChatTurn, max_neighbours: int = 5, width: int | None = None) -> str:
    """The turn as transcript lines: user, system, and the linked, recommended and graph-neighbour entities.

    ``width``: wrap every line at that many characters, its continuations indented two spaces deeper than the
    line (a rendered page cuts long lines off behind a scroll bar; a terminal wraps them itself, so the CLI leaves
    it None). Words are never split, so a single word longer than ``width`` stays whole."""
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 20):
        raise ValueError(f"width: expected an integer >= 20 or None, got {width!r}")
    lines = [f"User: {turn.user}", f"System: {turn.response}"]
    if turn.linked:
        lines.append("  linked: " + ", ".join(n for _, n in turn.linked))
    if turn.recommended:
        lines.append("  recommended: " + "; ".join(n for _, n in turn.recommended))
    if turn.neighbours:
        parts = [f"{g}: " + ", ".join(n for _, n in v[:max_neighbours]) for g, v in sorted(turn.neighbours.items())]
        lines.append("  graph neighbours: " + " | ".join(parts))
    if width is not None:
        lines = [_wrap(line, width) for line in lines]
    return "\n".join(lines)


def _wrap(line: str, width: int) -> str:
    """``line`` wrapped at ``width``, continuations indented two spaces deeper than the line itself."""
    indent = len(line) - len(line.lstrip()) + 2
    return textwrap.fill(line, width, subsequent_indent=" " * indent, break_long_words=False,
                         break_on_hyphens=False)


def carried_over(turns: Sequence[ChatTurn]) -> list[int | None]:
    """Per turn, how many of its recommended movies the previous turn's list already held (None for the first).

    A recommender that follows the latest request keeps few movies when a turn changes direction ("a comedy
    instead?"); one that ranks from everything said so far keeps most of them. Movies the dialog has mentioned in
    between drop out of a list by themselves, so a count below the list's length is not by itself a change of
    direction."""
    out: list[int | None] = []
    for i, turn in enumerate(turns):
        if i == 0:
            out.append(None)
            continue
        before = {e for e, _ in turns[i - 1].recommended}
        out.append(sum(e in before for e, _ in turn.recommended))
    return out
