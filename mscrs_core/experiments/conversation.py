"""One conversation run (Table 3, Figure 4c-d): train the generator of section 4.4, generate, score.

:func:`run_conversation` builds the semantic graphs of the dataset, the enhanced entity sets (Eq. 25),
the training-only context bank of the correlation semantic mapping (Eq. 26-27), trains the
conversation prompt on a frozen backbone with the loss of Eq. 29, generates responses for test
contexts and scores them (BLEU-2/3, ROUGE-2/L, Distinct-n in both conventions). ``model="backbone"``
is the plain backbone: the same frozen LM generating from the context alone, no prompt, no training. The
reference rows (``model`` in :data:`~mscrs_core.baselines.response_references.REFERENCE_MODELS`: the nearest
training context's response, the most frequent training response, a random training response) generate nothing
and load no language model; they are scored the same way.

Defaults (deviations from the paper, stated in the conversation chapters): the backbone is SmolLM2-135M-Instruct
(``"smollm2-135m"``, offline, bf16, eager attention; converted once to safetensors under ``cache/backbones``)
instead of DialoGPT-small, and the soft prompt goes AFTER the context (``prompt_position="suffix"``,
:mod:`~mscrs_core.models.context_states`) instead of before it (Eq. 28, ``"prefix"``, the ``paper`` profile).
In the suffix order the context key/value states of the validation and test contexts (and of the training
contexts when ``epochs > 1``) are kept in a :class:`~mscrs_core.models.context_states.ContextStateBank`, saved
under ``cache/context-states/`` (name: backbone fingerprint, dataset, split, context length) and loaded when
present. ``backbone="tiny-dialogpt"`` (the project's miniature DialoGPT, fp32) is what the smoke profile uses.
Results go to ``<results_dir>/<run name>/result.json`` (atomic; a finished run of the same configuration, data,
version and backbone, not edited since, is loaded: :mod:`.fingerprint`).
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..atomic import atomic_write_text
from ..data.files import project_root
from .fingerprint import reusable_result, run_fingerprint, seal, start_run
from .run_config import RunConfig
from ..models.conversation import ConversationConfig
from .recommendation import BackboneConfig, default_results_dir, graph_settings, subsample, tiny_dialogpt_for
from ..baselines.response_references import REFERENCE_MODELS

#: "mscrs" (trained generator), "backbone" (the plain frozen LM) and the reference rows, which generate nothing
#: (:mod:`~mscrs_core.baselines.response_references`)
MODELS = ("mscrs", "backbone", *REFERENCE_MODELS)
#: largest context-state bank a run keeps in memory (bytes); bigger sets are encoded batch by batch instead
MAX_STATE_BANK_BYTES = 3 << 30


@dataclass(frozen=True)
class ConversationDataConfig:
    """Which conversation turns a run reads (0: all of a split)."""

    # 0: all recommender turns of the training split (7,806 on INSPIRED). 3000 rather than 1000, chosen on the
    # validation split: BLEU-2 of 100 generated validation responses 0.018 against 0.0097 (chapter 6 says so)
    max_train_samples: int = 3000
    max_eval_samples: int = 200  # test turns when max_test_samples is None; validation: half of it
    # Table 3's test turns: 0 = every recommender turn of the test split (the paper's protocol); None = the first
    # max_eval_samples of them (what every run recorded before this field scored)
    max_test_samples: int | None = 0


@dataclass(frozen=True)
class ConversationGraphConfig:
    """The semantic graphs the generator reads (always the paper's recipe; ``use_graphs=False``: the knowledge
    graph alone)."""

    use_graphs: bool = True  # False: knowledge-graph prompt only (no collaborative/text graph)
    k: int = 10
    entity_dim: int = 64


def _run_conversation_config() -> ConversationConfig:
    # the run's model defaults where they differ from ConversationConfig's own (which are Eq. 28's order):
    # the soft prompt after the cached context, responses cut at 48 tokens
    return ConversationConfig(prompt_position="suffix", max_response_length=48)


@dataclass(frozen=True)
class ConversationTrainingConfig:
    """The schedule of Eq. (29)'s training (the rest: :class:`~mscrs_core.training.conversation.ConversationTrainConfig`)."""

    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-2  # soft-prompt learning rate (1e-3 barely moves the prompt in one epoch of 1,000 turns)
    # batches of responses of similar length, sorted within windows of this many batches (0: plain shuffled
    # batches, the runs before it): a batch runs the frozen LM over its longest response only
    group_by_length: int = 16

    def trainer(self, output_dir: str | os.PathLike | None, seed: int, progress: bool = False):
        """The trainer's settings; ``output_dir=None`` keeps the best weights in memory (no folder, no resume)."""
        from ..training.conversation import ConversationTrainConfig

        return ConversationTrainConfig(output_dir=None if output_dir is None else str(output_dir), epochs=self.epochs, batch_size=self.batch_size,
                                       lr=self.lr, seed=seed, progress=progress,
                                       group_by_length=self.group_by_length)


PLAIN_CONTEXTS = ("states", "generate")


@dataclass(frozen=True)
class DecodingConfig:
    """How responses are generated (:class:`~mscrs_core.models.generate.GenerationConfig`)."""

    max_new_tokens: int = 50  # the authors' max_gen_len
    # None: the median length (backbone tokens) of the training responses. BLEU's brevity penalty punishes a
    # response shorter than its reference, and a frozen chat LM stops after one short sentence
    min_new_tokens: int | None = None
    # 1 = greedy, the authors' decoding. Four beams scored higher on 300 validation turns (BLEU-2 0.0251 against
    # 0.0189) but not on the test turns of a cold build (0.0162), at 2.5x the decoding time (chapter 6)
    num_beams: int = 1
    no_repeat_ngram_size: int = 3
    length_penalty: float = 1.0  # beam search only
    # the plain-backbone row (model="backbone"): "states" decodes after the test contexts' cached key/value states
    # (the trained rows' bank files; models.plain_generator), "generate" runs Hugging Face generate over each
    # context's text (the runs before; the prefix prompt order always does)
    plain_context: str = "states"

    def __post_init__(self) -> None:
        if self.plain_context not in PLAIN_CONTEXTS:
            raise ValueError(f"plain_context: expected one of {PLAIN_CONTEXTS}, got {self.plain_context!r}")

    def generation_config(self, median_tokens: int):
        """The decoding parameters, ``min_new_tokens=None`` resolved to ``median_tokens`` (capped)."""
        from ..models.generate import GenerationConfig

        min_new = median_tokens if self.min_new_tokens is None else self.min_new_tokens
        return GenerationConfig(max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                no_repeat_ngram_size=self.no_repeat_ngram_size, length_penalty=self.length_penalty,
                                min_new_tokens=min(min_new, self.max_new_tokens))


@dataclass(frozen=True)
class ConversationRunConfig(RunConfig):
    """One conversation run (Table 3, Figure 4c-d): which model on which data, and its sections. The
    generator's own hyper-parameters are its :class:`~mscrs_core.models.conversation.ConversationConfig`."""

    dataset: str = "inspired"
    model: str = "mscrs"  # "mscrs" | "backbone" (plain frozen LM) | a reference row (REFERENCE_MODELS)
    seed: int = 0
    data: ConversationDataConfig = field(default_factory=ConversationDataConfig)
    graphs: ConversationGraphConfig = field(default_factory=ConversationGraphConfig)
    language_model: BackboneConfig = field(default_factory=BackboneConfig)
    conversation: ConversationConfig = field(default_factory=_run_conversation_config)
    training: ConversationTrainingConfig = field(default_factory=ConversationTrainingConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)

    SECTIONS: ClassVar[tuple[str, ...]] = ("data", "graphs", "language_model", "conversation", "training",
                                           "decoding")
    #: the run digest (and so the folder names of finished runs) and older result.json files know
    #: ``graph_prompt`` by its former name
    DIGEST_NAMES: ClassVar[dict[str, str]] = {"graph_prompt": "graph_variant"}
    # fields chapter 6 did not set before the run configuration composed the model's config: at their defaults
    # they leave the digests of earlier runs as they were
    DIGEST_SINCE_DEFAULTS: ClassVar[tuple[str, ...]] = (
        "max_entities", "n_entity_prompt", "n_task_prompt", "max_neighbours", "mapping_k", "mapping_mlp_hidden",
        "loss_on", "loss_reduction", "fuse_weight", "tau", "max_context_length", "max_response_length",
        "placeholder", "length_penalty", "max_test_samples", "group_by_length", "plain_context",
        "prompt_injection")
    # Table 3 on every test turn became the default; the runs recorded before scored max_eval_samples of them;
    # length-grouped batches likewise (the runs before them shuffled the batches plainly), and the plain row's
    # decoding after the cached context states (before: Hugging Face generate over the context text)
    DIGEST_LEGACY_VALUES: ClassVar[dict[str, Any]] = {"max_test_samples": None, "group_by_length": 0,
                                                      "plain_context": "generate"}

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"ConversationRunConfig.model must be one of {MODELS}, got {self.model!r}")
        if self.dataset not in ("inspired", "redial"):
            raise ValueError(f"ConversationRunConfig.dataset must be 'inspired' or 'redial', got {self.dataset!r}")
        untrained = ConversationTrainingConfig(group_by_length=self.DIGEST_LEGACY_VALUES["group_by_length"])
        if self.model != "mscrs" and self.training != untrained:
            # the plain frozen LM and the reference rows train nothing: the prompt's schedule must not enter their
            # identity, or a new epoch count (or batch grouping) would recompute chapter 7's rows for the very same
            # responses
            object.__setattr__(self, "training", untrained)
        if self.model != "mscrs" and self.conversation.prompt_injection != "inputs":
            # nor how a prompt they do not have would enter the backbone (a profile that gives chapter 6 the layer
            # prompt shares the plain and reference rows with one that does not)
            object.__setattr__(self, "conversation", replace(self.conversation, prompt_injection="inputs"))

    def identity(self) -> dict[str, Any]:
        """As :meth:`RunConfig.identity`; ``plain_context`` counts for the plain-backbone row only (the trained rows
        never read it, so their digests ignore it)."""
        ident = super().identity()
        if self.model != "backbone":
            ident.pop("plain_context", None)
        return ident

    def name(self) -> str:
        flags = "".join(c for c, on in (("g", self.use_graphs), ("s", self.use_enhanced_entities),
                                        ("c", self.use_context_mapping)) if on) or "0"
        return f"conv-{self.dataset}-{self.model}-{flags}-s{self.seed}-{self.digest()}"

    def shared_caches(self) -> tuple[tuple, ...]:
        if self.model in REFERENCE_MODELS:  # no language model; the nearest row's context features are its own
            return ()
        keys: list[tuple] = []
        if self.backbone == "tiny-dialogpt":
            keys.append(("tiny-dialogpt", self.dataset, self.backbone_epochs))
        else:
            keys.append(("backbone", self.backbone))
        if self.model == "mscrs":
            keys.append(("item text features", self.dataset))
            if self.use_context_mapping:
                keys.append(("context bank", self.dataset, self.text_embedder, self.max_train_samples))
        return tuple(keys)

    def prepare_caches(self, data_root: str | None = None, cache_dir: str | None = None) -> None:
        from ..data import load_dataset
        from ..graphs.assemble import build_dataset_graphs

        if self.model in REFERENCE_MODELS:
            return
        cache = Path(cache_dir) if cache_dir else project_root() / "cache"
        ds = load_dataset(self.dataset, data_root)
        backbone, tokenizer = load_conversation_backbone(self, ds, cache)  # converts a GGUF backbone once
        if self.model != "mscrs":
            return
        graphs = build_dataset_graphs(ds, graph_settings(self.k, cache_dir=cache), data_root)
        if self.use_context_mapping:  # the bank embeds the training contexts through the on-disk cache
            build_generator(self, ds, graphs, backbone, tokenizer, conversation_splits(self, ds)[0], cache)

    def relative_cost(self) -> float:
        per_model = {"mscrs": 1.0, "backbone": 0.1}.get(self.model, 0.01)
        return per_model * (2.0 if self.dataset == "redial" else 1.0)


def load_conversation_backbone(cfg, ds, cache: Path):
    """The frozen backbone and tokenizer of a run: the miniature DialoGPT (cached per dataset) or
    ``cfg.backbone``, in ``cfg.backbone_dtype`` with ``cfg.attn_implementation`` (a GGUF is converted once under
    ``cache/backbones``)."""
    from ..models import load_backbone

    path = backbone_path(cfg, ds, cache)
    return load_backbone(path, dtype=getattr(torch, getattr(cfg, "backbone_dtype", "float32")),
                         attn_implementation=getattr(cfg, "attn_implementation", "") or None,
                         cache_dir=cache / "backbones")


def state_bank_for(model, samples: list, dataset: str, split: str, cache: Path, *,
                   max_bytes: int = MAX_STATE_BANK_BYTES, max_disk_bytes: int | None = None):
    """A :class:`~mscrs_core.models.context_states.ContextStateBank` holding the contexts of ``samples``
    (``prompt_position="suffix"``), loaded from ``cache/context-states/`` when there and saved there when it
    grew. Up to ``max_bytes`` the missing states are computed in memory; beyond it, and up to ``max_disk_bytes``
    (default: ``$MSCRS_STATE_BANK_DISK_GB``, else 24 GB), they are streamed into the file as they are computed and
    read back memory-mapped, so the training contexts of chapter 6 are encoded once and then shared by every
    later run on the same contexts (chapter 7's rows, a rebuild). The states are stored in the backbone's dtype;
    a float32 backbone's in bfloat16 when float32 would pass both limits. None when even that is too large (then
    every batch encodes its contexts)."""
    from ..models.context_states import ContextStateBank, bank_path

    if model.config.prompt_position != "suffix" or not samples:
        return None
    if max_disk_bytes is None:
        max_disk_bytes = int(float(os.environ.get("MSCRS_STATE_BANK_DISK_GB", "24")) * (1 << 30))
    bb = model.backbone
    c = bb.config
    heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    width = model.config.max_context_length
    dtype = next(bb.parameters()).dtype
    row_bytes = 2 * c.num_hidden_layers * heads * head_dim * width * torch.finfo(dtype).bits // 8
    if row_bytes * len(samples) > max(max_bytes, max_disk_bytes) and torch.finfo(dtype).bits > 16:
        # a float32 backbone (a processor without native bfloat16): store the states in bfloat16, half the bytes,
        # rounded as a bfloat16 backbone computes them, rather than re-encode every batch's contexts
        dtype = torch.bfloat16
        row_bytes //= 2
    if row_bytes * len(samples) > max(max_bytes, max_disk_bytes):
        return None
    bank = ContextStateBank(bb, width, model.tokenizer.pad_token_id, dtype=dtype, batch_size=16)
    # "conv-" keeps these files apart from the recommender's banks (other token sequences, same backbone)
    path = bank_path(cache / "context-states", bb, dataset, f"conv-{split}", width)
    bank.load(path)
    collator = model.make_collator(generation=True)
    rows = []
    for start in range(0, len(samples), 64):
        b = collator(samples[start:start + 64])
        rows += bank.rows_of(b["context_ids"], b["context_mask"])
    missing = list(dict.fromkeys(r for r in rows if r not in bank))
    if not missing:
        return bank
    path.parent.mkdir(parents=True, exist_ok=True)
    if row_bytes * (len(bank) + len(missing)) <= max_bytes:  # small: compute in memory, then save
        bank.add(missing)
        bank.save(path)
        return bank
    bank.save(path, compute=missing)  # large: streamed to disk (stored rows copied, new ones computed on the way)
    on_disk = ContextStateBank(bb, width, model.tokenizer.pad_token_id, dtype=dtype, batch_size=16)
    if not on_disk.load(path):
        raise RuntimeError(f"{path}: the context-state bank just written cannot be read back")
    return on_disk


def _plain_after_states(backbone, tokenizer, samples, cfg: ConversationRunConfig, gen_cfg, cache: Path) -> list[str]:
    """The frozen LM continuing each context after its cached key/value states (the trained rows' bank files for
    the split), greedy rows leaving the batch when they end (:mod:`~mscrs_core.models.plain_generator`)."""
    from ..models.generate import generate_responses
    from ..models.plain_generator import PlainConfig, PlainGenerator

    c = cfg.conversation
    plain = PlainGenerator(backbone, tokenizer, PlainConfig(max_context_length=context_budget(cfg, backbone),
                                                            max_response_length=c.max_response_length))
    plain.state_bank = state_bank_for(plain, samples, cfg.dataset, "test", cache)
    return [r.raw for r in generate_responses(plain, samples, config=gen_cfg)]


def _plain_backbone(backbone, tokenizer, samples, cfg: ConversationRunConfig, min_new_tokens: int = 0) -> list[str]:
    """The frozen LM continuing the context (DialoGPT-style turns), no prompt and no training, through Hugging Face
    ``generate`` over each context's text (``plain_context="generate"``, and the prefix order)."""
    from ..core_share import borrowed_cores, follow_share
    from ..models.collate import context_text
    from ..models.generate import GENERATION_BATCH_SIZE

    tokenizer.padding_side = tokenizer.truncation_side = "left"  # keep the newest turns, generate at the end
    limit = getattr(backbone.config, "n_positions", None) or getattr(backbone.config, "max_position_embeddings", 1024)
    texts = [context_text(s.context, tokenizer.eos_token) + "System: " for s in samples]
    max_length = min(200, limit - cfg.max_new_tokens)
    # batches of similar context length, so that little of each batch is padding (INSPIRED's test contexts:
    # 1.4x fewer padded positions than in the given order); the responses are returned in the given order
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out: list[str] = [""] * len(texts)
    for i in range(0, len(order), GENERATION_BATCH_SIZE):
        rows = order[i:i + GENERATION_BATCH_SIZE]
        enc = tokenizer([texts[j] for j in rows], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length)
        with torch.no_grad(), borrowed_cores():  # forward only: the same tokens on any number of threads
            follow_share()
            beams = ({"length_penalty": cfg.length_penalty, "early_stopping": True} if cfg.num_beams > 1 else {})
            gen = backbone.generate(**enc, max_new_tokens=cfg.max_new_tokens, min_new_tokens=min_new_tokens,
                                    num_beams=cfg.num_beams, **beams,
                                    no_repeat_ngram_size=cfg.no_repeat_ngram_size, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        for j, row in zip(rows, gen[:, enc["input_ids"].shape[1]:]):
            out[j] = tokenizer.decode(row, skip_special_tokens=True).split(tokenizer.eos_token)[0].strip()
    return out


def conversation_splits(cfg: ConversationRunConfig, ds) -> tuple[list, list, list]:
    """Training turns with a non-empty response, and the validation/test subsets every run of ``cfg`` uses."""
    from ..data import conversation_samples

    train = subsample([s for s in conversation_samples(ds.dialogs("train"), ds) if s.response.strip()],
                       cfg.max_train_samples)
    valid = subsample(conversation_samples(ds.dialogs("valid"), ds), max(cfg.max_eval_samples // 2, 1))
    n_test = cfg.max_eval_samples if cfg.max_test_samples is None else cfg.max_test_samples
    test = subsample(conversation_samples(ds.dialogs("test"), ds), n_test)
    return train, valid, test


def backbone_path(cfg, ds, cache: Path) -> str:
    """The backbone a run loads: the project's miniature DialoGPT (cached per dataset) or ``cfg.backbone``."""
    return str(tiny_dialogpt_for(ds, cache, cfg.backbone_epochs) if cfg.backbone == "tiny-dialogpt" else cfg.backbone)


def context_budget(cfg: ConversationRunConfig, backbone) -> int:
    """The context tokens a run's generator reads: ``max_context_length``, less when the backbone's positions run
    out (response + prompt + a margin must fit after it)."""
    limit = getattr(backbone.config, "n_positions", None) or backbone.config.max_position_embeddings
    c = cfg.conversation
    room = limit - c.max_response_length - c.n_entity_prompt - c.n_task_prompt - 8  # response + prompt + margin
    return min(c.max_context_length, room)


def build_generator(cfg: ConversationRunConfig, ds, graphs, backbone, tokenizer, train: list, cache: Path):
    """The untrained :class:`~mscrs_core.models.conversation.MSCRSGenerator` of ``cfg`` (Eq. 25-29).

    ``graphs``: :class:`~mscrs_core.graphs.assemble.DatasetGraphs` of ``ds``; ``train``: the training turns whose
    contexts form the correlation semantic mapping's bank (Eq. 26), never validation or test turns.
    """
    from ..graphs.fusion import GraphConfig
    from ..models.context_mapping import ContextBank, make_text_embedder
    from ..models.conversation import MSCRSGenerator
    from ..models.enhanced_entities import EntityEnhancer

    gcfg = GraphConfig(dim=cfg.entity_dim, use_collab=cfg.use_graphs, use_text=cfg.use_graphs,
                       use_image=cfg.use_graphs)
    torch.manual_seed(cfg.seed)
    encoder = graphs.encoder(gcfg)
    ccfg = replace(cfg.conversation, max_context_length=context_budget(cfg, backbone))
    embedder = make_text_embedder(cfg.text_embedder, cache / f"{cfg.dataset}-conv-contexts")
    bank = None
    if cfg.use_context_mapping:
        enhancer = EntityEnhancer.from_encoder(encoder, max_neighbours=ccfg.max_neighbours,
                                               enabled=cfg.use_enhanced_entities)
        bank = ContextBank.build(train, enhancer, embedder, ds.num_entities, k=ccfg.mapping_k)
    return MSCRSGenerator(encoder, backbone, tokenizer, ccfg, bank=bank, embedder=embedder)


def _explain(model, samples: list, train: list, name_of, limit: int = 20) -> list[dict]:
    """For the first test samples: the Eq. (25) neighbours per graph and the Eq. (26) training contexts retrieved."""
    from ..models.context_mapping import sample_key

    last_turn = {sample_key(s): (s.context[-1][1] if s.context else "") for s in train}
    collator = model.make_collator(generation=True)
    out = []
    for s in samples[:limit]:
        by_graph = {g: [name_of(e) for e in ids[:8]] for g, ids in model.enhanced(s).by_graph().items()}
        retrieved = []
        if model.bank is not None:
            batch = collator([s])
            if "nb_index" in batch:
                retrieved = [last_turn.get(model.bank.keys[int(i)], model.bank.keys[int(i)])[:160]
                             for i in batch["nb_index"][0] if int(i) >= 0][:3]
        out.append({"context_entities": [name_of(e) for e in s.context_entities[-8:]], "neighbours": by_graph,
                    "retrieved_contexts": retrieved})
    return out


def median_response_tokens(samples: list, tokenizer) -> int:
    """The median length, in ``tokenizer``'s tokens, of the responses of ``samples`` (0 for none)."""
    lengths = sorted(len(tokenizer(s.response, add_special_tokens=False)["input_ids"]) for s in samples)
    return int(lengths[len(lengths) // 2]) if lengths else 0


def run_conversation(cfg: ConversationRunConfig, results_dir: str | os.PathLike | None = None,
                     data_root: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None
                     ) -> dict[str, Any]:
    """Train and evaluate one configuration (see the module docstring). Returns the result record."""
    from ..data import load_dataset
    from ..evaluation import GenerationEvaluator
    from ..graphs.assemble import build_dataset_graphs
    from ..training.conversation import evaluate_generation, train_generator

    run_dir = Path(results_dir or default_results_dir()) / cfg.name()
    result_path = run_dir / "result.json"
    res = reusable_result(result_path, cfg, data_root, cache_dir)  # same config, data, version, backbone, content
    if res is not None:
        return {**res, "reused": True}
    fingerprint = run_fingerprint(cfg, data_root, cache_dir)
    start_run(run_dir, fingerprint)  # checkpoints of other data are not resumed
    cache = Path(cache_dir) if cache_dir else project_root() / "cache"
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    ds = load_dataset(cfg.dataset, data_root)
    train, valid, test = conversation_splits(cfg, ds)
    record: dict[str, Any] = {"config": cfg.flat(), "name": cfg.name(),
                              "samples": {"train": len(train), "valid": len(valid), "test": len(test)}}
    refs = [s.response for s in test]
    explained: list[dict] = []
    if cfg.model in REFERENCE_MODELS:  # nothing generated: responses chosen from the training turns
        from ..baselines.response_references import reference_responses
        from ..models.context_mapping import make_text_embedder

        embedder = (make_text_embedder(cfg.text_embedder, cache / f"{cfg.dataset}-conv-contexts")
                    if cfg.model == "nearest_response" else None)
        preds = reference_responses(cfg.model, train, test, embedder=embedder, seed=cfg.seed)
        record.update(backbone=None, min_new_tokens=None)
    else:
        path = backbone_path(cfg, ds, cache)
        backbone, tokenizer = load_conversation_backbone(cfg, ds, cache)
        gen_cfg = cfg.decoding.generation_config(median_response_tokens(train, tokenizer)
                                                 if cfg.min_new_tokens is None else 0)
        record.update(backbone=path, min_new_tokens=gen_cfg.min_new_tokens)
    history: list = []
    if cfg.model == "backbone":
        if cfg.plain_context == "states" and cfg.prompt_position == "suffix":
            preds = _plain_after_states(backbone, tokenizer, test, cfg, gen_cfg, cache)
        else:
            preds = _plain_backbone(backbone, tokenizer, test, cfg, gen_cfg.min_new_tokens)
    if cfg.model != "mscrs":  # the untrained rows: their responses scored as the trained generator's
        ev = GenerationEvaluator()
        ev.update(preds, refs)
        metrics = ev.compute()
    else:
        graphs = build_dataset_graphs(ds, graph_settings(cfg.k, cache_dir=cache), data_root)
        model = build_generator(cfg, ds, graphs, backbone, tokenizer, train, cache)
        if model.featurizer is not None:  # Eq. (26)'s query contexts, encoded once per split and kept in cache/
            for split in (valid, test):
                model.featurizer.prefill(split)
        if cfg.prompt_position == "suffix":  # context states computed once per context (module docstring)
            bank = state_bank_for(model, valid, cfg.dataset, "valid", cache)
            # the training contexts' states too (on disk when large): with one epoch each is used once in this
            # run, but every later run on the same contexts (chapter 7's rows, a rebuild) reads them back
            train_bank = state_bank_for(model, train, cfg.dataset, "train", cache)
            if train_bank is not None and bank is not None:
                train_bank.merge(bank)
            model.state_bank = train_bank if train_bank is not None else bank
            model.state_bank_in_training = train_bank is not None
        res = train_generator(model, train, valid, cfg.training.trainer(run_dir / "train", cfg.seed))
        history = res.history
        model.eval()
        if cfg.prompt_position == "suffix":
            model.state_bank = state_bank_for(model, test, cfg.dataset, "test", cache)
        metrics, responses = evaluate_generation(model, test, config=gen_cfg, name_of=ds.name_of)
        preds = [r.raw for r in responses]
        explained = _explain(model, test, train, ds.name_of)
        record["graphs"] = {k: v for k, v in model.graph_encoder.describe().items() if k != "config"}
    counts = Counter(p.strip() for p in preds)
    top, n_top = counts.most_common(1)[0] if preds else ("", 0)
    # the degeneration check: no response string should make up more than 5% of the responses
    metrics = {**metrics, "top_response_share": n_top / max(len(preds), 1)}
    record["top_response"] = top
    examples = [{"key": f"{s.dialog_id}#{s.turn_index}", "context": [list(t) for t in s.context[-2:]],
                 "gold": s.response, "generated": p} for s, p in zip(test[:20], preds[:20])]
    for ex, extra in zip(examples, explained):
        ex.update(extra)
    record.update({"test": metrics, "history": history, "examples": examples,
                   "seconds": round(time.perf_counter() - t0, 1)})
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(result_path, json.dumps(seal(record, fingerprint), indent=1))
    return {**record, "reused": False}
