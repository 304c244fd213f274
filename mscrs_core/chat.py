"""``mscrs chat``: talk to a trained MSCRS (recommender + conversation model) from a saved checkpoint.

Checkpoint folder (written by :func:`save_chat_checkpoint`, read by :func:`load_chat_checkpoint`)::

    config.json          format tag, dataset name, the two model folders' names
    generator/           the conversation model (Eq. 25-29): ``MSCRSGenerator.save_pretrained``
    recommender/         the recommender (Eq. 17-24): ``MSCRSRecommender.save_pretrained``, optional
    entities.json        entity2id and entity names (for linking and display)
    backbone/            the frozen backbone, only when no loadable source name/path was given (the model
                         folders then name it as ``../backbone``)

Each model folder is a :mod:`~mscrs_core.models.pretrained` folder (``config.json`` + ``model.safetensors`` +
``graphs.safetensors`` + ``tokenizer/``); the backbone is loaded once, by the generator's recorded name, dtype and
attention implementation, and shared with the recommender. Nothing is unpickled. A missing folder/file raises
FileNotFoundError, an unreadable one ValueError; both name the path. Checkpoints of the previous format
(``mscrs-chat/1``: ``generator.pt``, ``recommender.pt``, ``graphs.pt``, read with ``torch.load(weights_only=True)``)
still load.

Each user utterance is linked to entities with :class:`~mscrs_core.data.linking.EntityLinker`
(``from_vocabulary(dataset.entity2id)``, items included because users type movie names; a vocabulary without
DBpedia URIs, like the synthetic test set, is linked through its entity names). The dialog history and the
accumulated entities form a conversation sample; the recommender ranks the items, the generator writes a
response whose ``<movie>`` slots are filled from that ranking (items already mentioned are skipped), and the
Eq. (25) neighbours that entered the prompt are reported per graph.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from mscrs_core.data.samples import Sample
from mscrs_core.data.schema import RECOMMENDER, SEEKER
from mscrs_core.graphs.inputs import GraphInputs  # what the graph encoders are built from (imported from here too)
from mscrs_core.models.pretrained import read_json

FORMAT = "mscrs-chat/2"
LEGACY_FORMAT = "mscrs-chat/1"
GENERATOR_DIR, RECOMMENDER_DIR, BACKBONE_DIR = "generator", "recommender", "backbone"


# ------------------------------------------------------------------------------------------ save / load


def save_chat_checkpoint(directory: str | Path, *, generator, dataset, graphs: GraphInputs | None = None,
                         recommender=None, backbone_source: str | None = None, gguf_file: str | None = None,
                         attn_implementation: str | None = None) -> Path:
    """Write everything ``mscrs chat`` needs into ``directory`` (see the module docstring).

    ``backbone_source``: a name/path :func:`~mscrs_core.models.backbone.load_backbone` can load later (e.g.
    ``"smollm2-135m"``: its GGUF is converted once under the project's ``cache/backbones``); ``None`` saves the
    (frozen, placeholder-resized) backbone itself into ``backbone/``. The backbone's dtype (e.g. bf16) and
    attention implementation are recorded and restored on load. ``graphs``: the graph structure to record
    (default: the one each model's graph encoder was built from).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if backbone_source is None:
        generator.sync_placeholder()
        generator.backbone.save_pretrained(d / BACKBONE_DIR)
        generator.tokenizer.save_pretrained(d / BACKBONE_DIR)
        backbone_source = f"../{BACKBONE_DIR}"
    kw = dict(backbone_source=backbone_source, gguf_file=gguf_file, attn_implementation=attn_implementation,
              graphs=graphs)
    generator.save_pretrained(d / GENERATOR_DIR, **kw)
    if recommender is not None:
        recommender.save_pretrained(d / RECOMMENDER_DIR, **kw)
    (d / "entities.json").write_text(json.dumps({
        "entity2id": dataset.entity2id, "item_ids": list(dataset.item_ids),
        "entity_names": {str(k): v for k, v in dataset.entity_names.items()}}), encoding="utf-8")
    (d / "config.json").write_text(json.dumps({
        "format": FORMAT, "dataset": dataset.name, "generator": GENERATOR_DIR,
        "recommender": RECOMMENDER_DIR if recommender is not None else None}, indent=2), encoding="utf-8")
    return d


@dataclass
class ChatBundle:
    """Everything loaded from a chat checkpoint."""

    directory: Path
    config: dict
    generator: object
    recommender: object | None
    entity2id: dict[str, int]
    entity_names: dict[int, str]
    item_ids: list[int]

    def name_of(self, entity: int) -> str:
        return self.entity_names.get(int(entity), str(entity))


def load_chat_checkpoint(directory: str | Path, device: str = "cpu") -> ChatBundle:
    """Rebuild the generator (and recommender, when saved) from :func:`save_chat_checkpoint`'s folder."""
    from mscrs_core.models.conversation import MSCRSGenerator
    from mscrs_core.models.recommender import MSCRSRecommender

    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: chat checkpoint folder not found (write one with save_chat_checkpoint)")
    cfg = read_json(d / "config.json", "checkpoint file")
    ents = read_json(d / "entities.json", "checkpoint file")
    if cfg.get("format") == LEGACY_FORMAT:
        from mscrs_core._chat_legacy import load_legacy_models

        generator, recommender = load_legacy_models(d, cfg, device)
    elif cfg.get("format") == FORMAT:
        for key in ("generator", "recommender"):
            if cfg.get(key) is not None and not isinstance(cfg.get(key), str):
                raise ValueError(f"{d / 'config.json'}: corrupt chat checkpoint config ({key!r} must name a folder)")
        if not cfg.get("generator"):
            raise ValueError(f"{d / 'config.json'}: corrupt chat checkpoint config (no generator folder named)")
        generator = MSCRSGenerator.from_pretrained(d / cfg["generator"], device=device)
        recommender = None
        if cfg.get("recommender"):  # one backbone (and the generator's tokenizer, with <movie>) serves both
            recommender = MSCRSRecommender.from_pretrained(d / cfg["recommender"], backbone=generator.backbone,
                                                           tokenizer=generator.tokenizer, device=device)
    else:
        raise ValueError(f"{d / 'config.json'}: not a chat checkpoint (format {cfg.get('format')!r}, "
                         f"expected {FORMAT!r})")
    try:
        return ChatBundle(d, cfg, generator, recommender, dict(ents["entity2id"]),
                          {int(k): v for k, v in ents.get("entity_names", {}).items()}, list(ents["item_ids"]))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{d / 'entities.json'}: corrupt checkpoint file ({type(err).__name__}: {err})") from None


# ------------------------------------------------------------------------------------------ session


def make_linker(entity2id: dict[str, int], entity_names: dict[int, str]):
    """``EntityLinker.from_vocabulary(entity2id)``; vocabularies without DBpedia URIs fall back to the names."""
    from mscrs_core.data.linking import EntityLinker

    linker = EntityLinker.from_vocabulary(entity2id)
    if len(linker) == 0 and entity_names:
        fake = {f"<http://dbpedia.org/resource/{name.replace(' ', '_')}>": eid for eid, name in entity_names.items()}
        linker = EntityLinker.from_vocabulary(fake)
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


class ChatSession:
    """A dialog with a loaded :class:`ChatBundle`; keeps the history and the mentioned entities."""

    def __init__(self, bundle: ChatBundle, *, top_k: int = 5, generation=None, exclude_mentioned: bool = True):
        from mscrs_core.models.generate import GenerationConfig, recommender_ranker

        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k: expected an integer >= 1, got {top_k!r}")
        self.bundle, self.top_k, self.exclude_mentioned = bundle, top_k, exclude_mentioned
        self.generation = generation or GenerationConfig()
        self.linker = make_linker(bundle.entity2id, bundle.entity_names)
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
        excl = self.mentioned_items if self.exclude_mentioned else ()
        text, used = fill_placeholders(raw, ranking, name, gen.config.placeholder, excl)
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


def format_turn(turn: ChatTurn, max_neighbours: int = 5) -> str:
    lines = [f"User: {turn.user}", f"System: {turn.response}"]
    if turn.linked:
        lines.append("  linked: " + ", ".join(n for _, n in turn.linked))
    if turn.recommended:
        lines.append("  recommended: " + "; ".join(n for _, n in turn.recommended))
    if turn.neighbours:
        parts = [f"{g}: " + ", ".join(n for _, n in v[:max_neighbours]) for g, v in sorted(turn.neighbours.items())]
        lines.append("  graph neighbours: " + " | ".join(parts))
    return "\n".join(lines)


def _utterances(stream: TextIO):
    for line in stream:
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """``mscrs chat --checkpoint DIR [--script FILE]``: print the transcript; 0 on success, 2 on bad input."""
    from mscrs_core.models.generate import GenerationConfig

    ap = argparse.ArgumentParser(prog="mscrs chat", description="Chat with a trained MSCRS checkpoint.")
    ap.add_argument("--checkpoint", required=True, help="folder written by save_chat_checkpoint")
    ap.add_argument("--script", default=None, help="file with one user utterance per line (default: stdin)")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=50)
    ap.add_argument("--num-beams", type=int, default=1)
    ap.add_argument("--no-repeat-ngram-size", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    out, err = stdout or sys.stdout, sys.stderr
    try:
        gen_cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                                   no_repeat_ngram_size=args.no_repeat_ngram_size)
        session = ChatSession.load(args.checkpoint, args.device, top_k=args.top_k, generation=gen_cfg)
        if args.script is not None:
            script = Path(args.script)
            if not script.is_file():
                raise FileNotFoundError(f"{script}: script file not found")
            stream: TextIO = script.open(encoding="utf-8")
        else:
            stream = stdin or sys.stdin
    except (FileNotFoundError, ValueError) as e:
        print(f"mscrs chat: error: {e}", file=err)
        return 2
    interactive = args.script is None and stream.isatty()
    with stream if args.script is not None else _nullcontext(stream):
        if interactive:
            print("(type /reset to start over, /quit or Ctrl-D to leave)", file=out)
        for utt in _utterances(stream):
            if utt == "/quit":
                break
            if utt == "/reset":
                session.reset()
                print("-- new dialog --", file=out)
                continue
            print(format_turn(session.respond(utt)), file=out, flush=True)
    return 0


class _nullcontext:
    def __init__(self, obj):
        self.obj = obj

    def __enter__(self):
        return self.obj

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
