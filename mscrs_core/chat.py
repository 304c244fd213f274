"""``mscrs chat``: talk to a trained MSCRS (recommender + conversation model) from a saved checkpoint.

Checkpoint folder (written by :func:`save_chat_checkpoint`, read by :func:`load_chat_checkpoint`)::

    config.json          format tag, dataset name, backbone source, graph/recommender/generator configs
    tokenizer/           the backbone tokenizer with the <movie> special token
    backbone/            the frozen backbone (only when no loadable source name/path was given)
    graphs.pt            the semantic graphs' edges (KG, co-mention, text/image kNN) and item ids
    entities.json        entity2id and entity names (for linking and display)
    generator.pt         the conversation model's trainable state (Eq. 25-29)
    context_bank.pt      the training contexts of the correlation semantic mapping (Eq. 26), when used
    recommender.pt       the recommender's trainable state (Eq. 17-24), optional

Every ``.pt`` file is read with ``torch.load(weights_only=True)``. A missing folder/file raises
FileNotFoundError, an unreadable one ValueError; both name the path.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import torch

from mscrs_core.data.samples import Sample
from mscrs_core.data.schema import RECOMMENDER, SEEKER

FORMAT = "mscrs-chat/1"
# the recommender fields of checkpoints written before RecommenderConfig existed (read only)
REC_KWARGS = ("max_entities", "n_entity_prompt", "n_task_prompt", "tau", "fuse_weight", "fuse_variant", "rec_scope")


# ------------------------------------------------------------------------------------------ graph inputs


@dataclass
class GraphInputs:
    """What a :class:`~mscrs_core.graphs.fusion.SemanticGraphEncoder` is built from (saved in ``graphs.pt``)."""

    num_entities: int
    item_ids: torch.Tensor
    kg_edge_index: torch.Tensor
    kg_edge_type: torch.Tensor
    kg_num_relations: int
    collab_edge_index: torch.Tensor | None = None
    collab_edge_weight: torch.Tensor | None = None
    text_edge_index: torch.Tensor | None = None
    image_edge_index: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    image_mask: torch.Tensor | None = None

    @classmethod
    def from_parts(cls, num_entities: int, item_ids, kg, collab=None, text=None, image=None,
                   text_mask=None, image_mask=None) -> "GraphInputs":
        """From a ``KGEdges`` and optional ``CoMentionGraph`` / ``KNNGraph`` objects."""
        return cls(
            num_entities, torch.as_tensor(item_ids, dtype=torch.long), kg.edge_index, kg.edge_type,
            int(kg.num_relations),
            None if collab is None else collab.edge_index, None if collab is None else collab.edge_weight,
            None if text is None else text.edge_index, None if image is None else image.edge_index,
            text_mask if text_mask is not None else getattr(text, "valid_mask", None),
            image_mask if image_mask is not None else getattr(image, "valid_mask", None),
        )

    @classmethod
    def from_dataset_graphs(cls, graphs) -> "GraphInputs":
        """From :class:`~mscrs_core.graphs.assemble.DatasetGraphs`."""
        return cls.from_parts(graphs.dataset.num_entities, graphs.item_ids, graphs.kg, graphs.collab,
                              graphs.text_knn, graphs.image_knn, graphs.text_mask, graphs.image_mask)

    def encoder(self, config):
        """A fresh ``SemanticGraphEncoder`` under ``config``; graphs absent here are switched off."""
        from dataclasses import replace

        from mscrs_core.graphs.fusion import SemanticGraphEncoder
        from mscrs_core.graphs.kg import KGEdges

        kg = KGEdges(self.kg_edge_index, self.kg_edge_type, self.num_entities, self.kg_num_relations, {}, {}, None,
                     [str(i) for i in range(self.kg_num_relations)])
        cfg = replace(config, use_collab=config.use_collab and self.collab_edge_index is not None,
                      use_text=config.use_text and self.text_edge_index is not None,
                      use_image=config.use_image and self.image_edge_index is not None)
        collab = None if not cfg.use_collab else (self.collab_edge_index, self.collab_edge_weight)
        return SemanticGraphEncoder(self.num_entities, kg, self.item_ids, cfg, collab=collab,
                                    text=self.text_edge_index if cfg.use_text else None,
                                    image=self.image_edge_index if cfg.use_image else None,
                                    text_mask=self.text_mask, image_mask=self.image_mask)


# ------------------------------------------------------------------------------------------ save / load


def _graph_config_dict(encoder) -> dict:
    return asdict(encoder.config)


def save_chat_checkpoint(directory: str | Path, *, generator, dataset, graphs: GraphInputs, recommender=None,
                         backbone_source: str | None = None, gguf_file: str | None = None,
                         attn_implementation: str | None = None) -> Path:
    """Write everything ``mscrs chat`` needs into ``directory`` (see the module docstring).

    ``backbone_source``: a name/path :func:`~mscrs_core.models.backbone.load_backbone` can load later (e.g.
    ``"smollm2-135m"``: its GGUF is converted once under the project's ``cache/backbones``); ``None`` saves the
    (frozen, placeholder-resized) backbone itself into ``backbone/``. The backbone's dtype (e.g. bf16) and
    ``attn_implementation`` are recorded and restored on load.
    """
    from mscrs_core.training.checkpoint import atomic_save

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tok = generator.tokenizer
    tok.save_pretrained(d / "tokenizer")
    if backbone_source is None:
        generator.sync_placeholder()
        generator.backbone.save_pretrained(d / "backbone")
        tok.save_pretrained(d / "backbone")
    rec_cfg = None
    if recommender is not None:
        rec_cfg = {"config": recommender.config.to_dict(), "lm_path": recommender.lm_path,
                   "graph_config": _graph_config_dict(recommender.graph_encoder)}
        atomic_save(recommender.trainable_state_dict(), d / "recommender.pt")
    config = {
        "format": FORMAT,
        "dataset": dataset.name,
        "backbone": {"source": backbone_source, "gguf_file": gguf_file, "saved": backbone_source is None,
                     "dtype": str(next(generator.backbone.parameters()).dtype).removeprefix("torch."),
                     "attn_implementation": attn_implementation},
        "generator": generator.config.to_dict(),
        "generator_graph_config": _graph_config_dict(generator.graph_encoder),
        "recommender": rec_cfg,
    }
    atomic_save(generator.trainable_state_dict(), d / "generator.pt")
    if generator.bank is not None:
        atomic_save(generator.bank.state(), d / "context_bank.pt")
    atomic_save({k: v for k, v in asdict(graphs).items()}, d / "graphs.pt")
    (d / "entities.json").write_text(json.dumps({
        "entity2id": dataset.entity2id, "item_ids": list(dataset.item_ids),
        "entity_names": {str(k): v for k, v in dataset.entity_names.items()}}), encoding="utf-8")
    (d / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return d


def _load_pt(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/garbage files
        raise ValueError(f"{path}: corrupt or unreadable checkpoint file ({type(err).__name__}: {err})") from None


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing checkpoint file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: corrupt checkpoint file (not valid JSON: {err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: corrupt checkpoint file (expected a JSON object)")
    return data


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
    from mscrs_core.graphs.fusion import GraphConfig
    from mscrs_core.models.backbone import freeze, load_backbone
    from mscrs_core.models.context_mapping import ContextBank, make_text_embedder
    from mscrs_core.models.conversation import ConvConfig, MSCRSGenerator
    from mscrs_core.models.recommender import MSCRSRecommender, RecommenderConfig

    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: chat checkpoint folder not found (write one with save_chat_checkpoint)")
    cfg = _load_json(d / "config.json")
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{d / 'config.json'}: not a chat checkpoint (format {cfg.get('format')!r}, "
                         f"expected {FORMAT!r})")
    ents = _load_json(d / "entities.json")
    graphs = GraphInputs(**_load_pt(d / "graphs.pt"))
    gen_state = _load_pt(d / "generator.pt")
    try:
        from transformers import AutoTokenizer

        if not (d / "tokenizer").is_dir():
            raise FileNotFoundError(f"{d / 'tokenizer'}: missing tokenizer folder")
        tokenizer = AutoTokenizer.from_pretrained(str(d / "tokenizer"))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        b = cfg["backbone"]
        dtype = getattr(torch, b.get("dtype") or "float32", None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{d / 'config.json'}: backbone dtype {b.get('dtype')!r} is not a torch dtype")
        kw = {"dtype": dtype, "attn_implementation": b.get("attn_implementation") or None}
        if b.get("saved"):
            if not (d / "backbone").is_dir():
                raise FileNotFoundError(f"{d / 'backbone'}: missing backbone folder")
            backbone, _ = load_backbone(str(d / "backbone"), **kw)
        else:
            from mscrs_core.data.files import project_root

            backbone, _ = load_backbone(b["source"], gguf_file=b.get("gguf_file"),
                                        cache_dir=project_root() / "cache" / "backbones", **kw)
        freeze(backbone.to(device))
        gconf = ConvConfig.from_dict(cfg["generator"])
        bank = embedder = None
        if gconf.use_context_mapping:
            bank = ContextBank.from_state(_load_pt(d / "context_bank.pt"))
            embedder = make_text_embedder(gconf.text_embedder)
        gen_graph = graphs.encoder(GraphConfig(**cfg["generator_graph_config"]))
        generator = MSCRSGenerator(gen_graph, backbone, tokenizer, gconf, bank=bank, embedder=embedder)
        generator.load_trainable_state_dict(gen_state)
        generator.to(device).eval()
        recommender = None
        if cfg.get("recommender"):
            rc = dict(cfg["recommender"])
            rec_graph = graphs.encoder(GraphConfig(**rc.pop("graph_config")))
            if "config" in rc:
                rec_config = RecommenderConfig.from_dict(rc["config"])
            else:  # checkpoints written before RecommenderConfig: the paper's recipe and these fields
                rec_config = RecommenderConfig.paper(**{k: rc[k] for k in REC_KWARGS})
            recommender = MSCRSRecommender(rec_graph, backbone, graphs.item_ids, tokenizer=tokenizer,
                                           config=rec_config)
            recommender.load_trainable_state_dict(_load_pt(d / "recommender.pt"))
            if not rc.get("lm_path", True):  # validation kept the warm-up's weights: scored without the LM
                recommender.close_lm_path()
            recommender.to(device).eval()
    except (KeyError, TypeError) as err:
        raise ValueError(f"{d / 'config.json'}: corrupt chat checkpoint config ({type(err).__name__}: {err})") from None
    return ChatBundle(d, cfg, generator, recommender, dict(ents["entity2id"]),
                      {int(k): v for k, v in ents.get("entity_names", {}).items()}, list(ents["item_ids"]))


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
