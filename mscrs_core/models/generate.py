"""Response generation with the MSCRS conversation model and placeholder filling (UniCRS's protocol).

* :func:`generate_ids`: greedy (``num_beams=1``) or beam search through the frozen backbone's
  ``generate(inputs_embeds=c_s, attention_mask=...)`` (Eq. 28 prompt + context + ``"System:"``), with
  ``max_new_tokens``, ``no_repeat_ngram_size``, ``num_beams``, ``length_penalty`` as parameters; no sampling.
  With ``inputs_embeds`` only, Hugging Face's no-repeat-n-gram constraint sees the GENERATED tokens only (the
  context has no ids), as in the authors' and UniCRS's runs. Generation stops at EOS.
* ``prompt_position="suffix"`` (:mod:`~mscrs_core.models.conversation`): :func:`generate_suffix`, an explicit
  batched greedy / beam-search loop: the context's states come from the generator's state bank or one no-grad
  pass, then [T_tilde_s; O_cov; "System:"] runs once after them and every new token is one incremental step over
  the growing key/value cache. Token inputs and the placeholder's logit use the generator's trainable placeholder
  vectors (as in training). The same decoding rules: EOS stops a row, ``no_repeat_ngram_size`` bans n-grams of the
  GENERATED tokens (as Hugging Face with ``inputs_embeds``), ``min_new_tokens`` bans EOS before it, beam search
  ranks finished hypotheses by ``sum log p / length ** length_penalty`` and stops a row once ``num_beams`` of them
  are finished (``early_stopping=True``). ``context_block_ngram`` (both orders) bans every n-gram of the dialog's
  context (its real token ids) from the response: the chat's decoding, never Table 3's.
* :func:`fill_placeholders`: every ``<movie>`` of a generated response is replaced, left to right, by the next
  item of the recommender's ranking for that context (UniCRS fills ``<movie>`` slots with its recommender's
  predictions); items in ``exclude`` (e.g. those already mentioned in the dialog) are skipped.
* :func:`generate_responses`: both steps for a list of samples, with a ``rank(sample) -> list[item ids]``
  callable (tests pass a stub; :func:`recommender_ranker` wraps a trained
  :class:`~mscrs_core.models.recommender.MSCRSRecommender`).
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mscrs_core.core_share import borrowed_cores, follow_share
from mscrs_core.data.samples import MOVIE_PLACEHOLDER

RankFn = Callable[[object], Sequence[int]]

#: Rows decoded together. Each batch pays fixed costs once (collating the Eq. 25-26 inputs, the context text's
#: encoding for the retrieval, the prompt, per-step Python work), so wider batches spend less of a run on them: 96 INSPIRED validation turns, 24 tokens each,
#: bank states, one thread: 17.7 s in batches of 48 against 26.4 s in batches of 16. Greedy results do not
#: depend on it (up to bf16 rounding).
GENERATION_BATCH_SIZE = 48


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding parameters (the authors: greedy, ``max_gen_len=50``, ``no_repeat_ngram_size=3``)."""

    max_new_tokens: int = 50
    num_beams: int = 1  # 1 = greedy
    no_repeat_ngram_size: int = 3  # 0 = off
    length_penalty: float = 1.0  # beam search only
    min_new_tokens: int = 0
    # > 0: no n-gram of the dialog's context may be generated (ParlAI's beam_context_block_ngram, BlenderBot's
    # decoding): a chat generator then cannot answer every turn with its previous sentence. 0 = off (Table 3)
    context_block_ngram: int = 0

    def __post_init__(self) -> None:
        if (self.max_new_tokens < 1 or self.num_beams < 1 or self.no_repeat_ngram_size < 0 or self.min_new_tokens < 0
                or self.context_block_ngram < 0):
            raise ValueError("GenerationConfig: max_new_tokens >= 1, num_beams >= 1, no_repeat_ngram_size >= 0, "
                             "min_new_tokens >= 0, context_block_ngram >= 0 expected")


@dataclass
class GeneratedResponse:
    """One generated response: raw text (with placeholders), filled text and the items that filled it."""

    raw: str
    text: str
    items: list[int]
    token_ids: list[int]


def _batch_to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def generate_ids(generator, batch: dict[str, torch.Tensor], config: GenerationConfig | None = None) -> list[list[int]]:
    """New token ids per row (EOS and what follows removed) for a generation batch
    (``generator.make_collator(generation=True)``)."""
    cfg = config or GenerationConfig()
    if getattr(generator.config, "prompt_position", "prefix") == "suffix":
        return generate_suffix(generator, batch, cfg)
    was_training = generator.training
    generator.eval()
    generator.sync_placeholder()
    device = next(generator.backbone.parameters()).device
    batch = _batch_to(batch, device)
    embeds, mask, _, _ = generator.inputs_embeds(batch)
    tok = generator.tokenizer
    kwargs = dict(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=cfg.max_new_tokens,
                  min_new_tokens=cfg.min_new_tokens, num_beams=cfg.num_beams, do_sample=False,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, num_return_sequences=1)
    if cfg.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = cfg.no_repeat_ngram_size
    if cfg.num_beams > 1:
        kwargs.update(length_penalty=cfg.length_penalty, early_stopping=True)
    if cfg.context_block_ngram:
        from transformers import LogitsProcessorList

        # the context's tokens: the real ids of the prefix-layout input (the generated ids start empty here)
        tables = _context_tables(batch, cfg.context_block_ngram, "input_ids", "attention_mask")
        kwargs["logits_processor"] = LogitsProcessorList([_ContextBlock(tables, cfg.context_block_ngram,
                                                                        cfg.num_beams)])
    with warnings.catch_warnings():  # the inputs_embeds/no-repeat note is documented in the module docstring
        warnings.filterwarnings("ignore", message=".*no_repeat_ngram_size.*inputs_embeds.*")
        out = generator.backbone.generate(**kwargs)
    generator.train(was_training)
    seqs = []
    for row in out.tolist():
        if tok.eos_token_id in row:
            row = row[: row.index(tok.eos_token_id)]
        seqs.append(row)
    return seqs


def context_ngrams(context: Sequence[int], n: int) -> dict[tuple[int, ...], set[int]]:
    """(n-1)-token prefix -> the tokens that complete it to an n-gram of ``context`` (for ``context_block_ngram``)."""
    table: dict[tuple[int, ...], set[int]] = {}
    if n <= 0:
        return table
    for i in range(len(context) - n + 1):
        table.setdefault(tuple(context[i:i + n - 1]), set()).add(int(context[i + n - 1]))
    return table


def _context_banned(tokens: list[int], table: dict[tuple[int, ...], set[int]], n: int) -> set[int]:
    """Tokens that would complete an n-gram of the context after the generated ``tokens``."""
    if n <= 0 or len(tokens) < n - 1:
        return set()
    return table.get(tuple(tokens[len(tokens) - n + 1:]) if n > 1 else (), set())


class _ContextBlock:
    """A Hugging Face logits processor for ``context_block_ngram`` (rows of ``input_ids`` are the generated
    tokens of hypothesis r, which belongs to context ``r // beams``)."""

    def __init__(self, tables: list[dict], n: int, beams: int):
        self.tables, self.n, self.beams = tables, n, beams

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for r, row in enumerate(input_ids.tolist()):
            ban = _context_banned(row, self.tables[r // self.beams], self.n)
            if ban:
                scores[r, list(ban)] = float("-inf")
        return scores


def _context_tables(batch: dict[str, torch.Tensor], n: int, ids_key: str, mask_key: str) -> list[dict]:
    ids, mask = batch[ids_key].tolist(), batch[mask_key].tolist()
    return [context_ngrams([t for t, m in zip(row, ms) if m], n) for row, ms in zip(ids, mask)]


def _banned(tokens: list[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram of ``tokens`` (no_repeat_ngram_size = n)."""
    if n <= 0 or len(tokens) < n - 1:
        return set()
    if n == 1:
        return set(tokens)
    prefix = tuple(tokens[len(tokens) - n + 1:])
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tuple(tokens[i:i + n - 1]) == prefix}


@torch.no_grad()
def generate_suffix(generator, batch: dict[str, torch.Tensor], config: GenerationConfig | None = None
                    ) -> list[list[int]]:
    """Greedy or beam decoding in the ``suffix`` prompt order (module docstring); new ids per row, EOS removed."""
    from mscrs_core.models.backbone import decoder_of

    cfg = config or GenerationConfig()
    was_training = generator.training
    generator.eval()
    device = next(generator.backbone.parameters()).device
    batch = _batch_to(batch, device)
    eos = generator.tokenizer.eos_token_id
    b, k = batch["context_ids"].shape[0], cfg.num_beams
    states = generator.context_states(batch["context_ids"], batch["context_mask"])
    tables = (_context_tables(batch, cfg.context_block_ngram, "context_ids", "context_mask")
              if cfg.context_block_ngram else None)
    states, embeds, mask, _ = generator.after_context(batch, states)
    dtype = next(generator.backbone.parameters()).dtype
    if k > 1:  # hypotheses of row i are rows i*k .. i*k+k-1
        idx = torch.arange(b, device=device).repeat_interleave(k)
        states = type(states)(states.keys.index_select(1, idx.to(states.keys.device)),
                              states.values.index_select(1, idx.to(states.keys.device)),
                              states.attention_mask.index_select(0, idx.to(states.attention_mask.device)))
        embeds, mask = embeds.index_select(0, idx), mask.index_select(0, idx)
    states = states.to(device, dtype)
    cache = states.as_cache()
    full_mask = torch.cat([states.attention_mask.long(), mask.long()], dim=1)
    # tail rows are right-padded: the next token follows the last REAL position of each row (padded positions stay
    # in the cache, masked out for every later step)
    last = mask.long().sum(1) - 1
    positions = states.length.unsqueeze(1) + mask.long().cumsum(1) - 1
    decoder = decoder_of(generator.backbone)
    out = decoder(inputs_embeds=embeds.to(dtype), attention_mask=full_mask, position_ids=positions.clamp_min(0),
                  cache=cache, use_cache=True)
    cache = out.cache
    hidden = out.last_hidden_state[torch.arange(embeds.shape[0], device=device), last]
    next_pos = positions.gather(1, last.unsqueeze(1)) + 1
    n = b * k
    seqs: list[list[int]] = [[] for _ in range(n)]
    alive = torch.zeros(b, k, device=device)
    if k > 1:
        alive[:, 1:] = float("-inf")  # all beams start identical: expand beam 0 only at the first step
    done = [False] * b
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    # greedy: the rows still decoding (batch position -> row); finished rows leave the batch (and the cache) once
    # an eighth of it has finished, so a batch does not pay for its longest response on every row
    rows = list(range(n))
    for step in range(cfg.max_new_tokens):
        logp = torch.log_softmax(generator.token_logits(hidden), dim=-1)  # [len(rows), V]
        if step < cfg.min_new_tokens:
            logp[:, eos] = float("-inf")
        if cfg.no_repeat_ngram_size or tables is not None:
            for p, r in enumerate(rows):
                ban = _banned(seqs[r], cfg.no_repeat_ngram_size)
                if tables is not None:
                    ban = ban | _context_banned(seqs[r], tables[r // k], cfg.context_block_ngram)
                if ban:
                    logp[p, list(ban)] = float("-inf")
        if k == 1:
            nxt = logp.argmax(-1)
            for p, r in enumerate(rows):
                if not done[r]:
                    tok = int(nxt[p])
                    if tok == eos:
                        done[r] = True
                    else:
                        seqs[r].append(tok)
            if all(done):
                break
            ended = [p for p, r in enumerate(rows) if done[r]]
            if len(ended) * 8 >= len(rows):
                keep = torch.tensor([p for p, r in enumerate(rows) if not done[r]], device=device)
                for layer in cache.layers:
                    layer.keys, layer.values = layer.keys.index_select(0, keep), layer.values.index_select(0, keep)
                full_mask, next_pos, nxt = full_mask.index_select(0, keep), next_pos.index_select(0, keep), nxt[keep]
                rows = [r for r in rows if not done[r]]
            else:  # rows that ended stay in the batch until the next compaction, fed EOS (their output is final)
                nxt = torch.where(torch.tensor([done[r] for r in rows], device=device), torch.full_like(nxt, eos), nxt)
            order = None
        else:
            v = logp.shape[-1]
            cand = (alive.view(b, k, 1) + logp.view(b, k, v)).view(b, k * v)
            top_s, top_i = cand.topk(2 * k, dim=1)
            new_alive = torch.full((b, k), float("-inf"), device=device)
            order = torch.arange(n, device=device)
            nxt = torch.full((n,), eos, dtype=torch.long, device=device)
            new_seqs = [list(x) for x in seqs]
            for i in range(b):
                if done[i]:
                    continue
                j = 0
                for sc, ci in zip(top_s[i].tolist(), top_i[i].tolist()):
                    if sc == float("-inf") or j == k:
                        break
                    beam, tok = divmod(ci, v)
                    src = i * k + beam
                    if tok == eos:
                        finished[i].append((sc / max(len(seqs[src]), 1) ** cfg.length_penalty, list(seqs[src])))
                        continue
                    new_seqs[i * k + j] = seqs[src] + [tok]
                    new_alive[i, j] = sc
                    order[i * k + j] = src
                    nxt[i * k + j] = tok
                    j += 1
                if len(finished[i]) >= k or j == 0:
                    done[i] = True
            seqs, alive = new_seqs, new_alive
            if all(done):
                break
            for layer in cache.layers:  # follow the surviving hypotheses
                layer.keys, layer.values = layer.keys.index_select(0, order), layer.values.index_select(0, order)
            full_mask = full_mask.index_select(0, order)
            next_pos = next_pos.index_select(0, order)
        if step == cfg.max_new_tokens - 1:
            break
        full_mask = torch.cat([full_mask, full_mask.new_ones(full_mask.shape[0], 1)], dim=1)
        emb = generator.embed_tokens(nxt.unsqueeze(1)).to(dtype)
        out = decoder(inputs_embeds=emb, attention_mask=full_mask, position_ids=next_pos, cache=cache, use_cache=True)
        cache, hidden, next_pos = out.cache, out.last_hidden_state[:, -1], next_pos + 1
    generator.train(was_training)
    if k == 1:
        return seqs
    result = []
    for i in range(b):
        pool = list(finished[i])
        if not done[i] or not pool:  # out of tokens: the surviving hypotheses compete too
            pool += [(float(alive[i, j]) / max(len(seqs[i * k + j]), 1) ** cfg.length_penalty, seqs[i * k + j])
                     for j in range(k) if alive[i, j] > float("-inf")]
        result.append(max(pool, key=lambda x: x[0])[1] if pool else [])
    return result


def decode(tokenizer, ids: Sequence[int]) -> str:
    """Text of generated ids; the placeholder stays a literal ``<movie>``; other special tokens are dropped."""
    specials = set(tokenizer.all_special_ids) - set(tokenizer.convert_tokens_to_ids([MOVIE_PLACEHOLDER]))
    return tokenizer.decode([i for i in ids if i not in specials], skip_special_tokens=False).strip()


def fill_placeholders(text: str, ranking: Sequence[int], name_of: Callable[[int], str],
                      placeholder: str = MOVIE_PLACEHOLDER, exclude: Sequence[int] = (),
                      strict: bool = False) -> tuple[str, list[int]]:
    """Replace each ``placeholder`` in ``text`` by the next ranked item not in ``exclude`` (UniCRS protocol).

    Returns the filled text and the items used, in order. When the ranking runs out, the remaining
    placeholders stay literal (``strict=True``: ValueError instead).
    """
    skip = set(int(e) for e in exclude)
    queue = list(dict.fromkeys(int(e) for e in ranking if int(e) not in skip))
    parts = text.split(placeholder)
    if strict and len(parts) - 1 > len(queue):
        raise ValueError(f"ranking: {len(parts) - 1} placeholders but only {len(queue)} rankable items")
    used = queue[: len(parts) - 1]
    out = parts[0]
    for j, rest in enumerate(parts[1:]):
        out += (name_of(used[j]) if j < len(used) else placeholder) + rest
    return out, used


def generate_responses(generator, samples: Sequence, *, config: GenerationConfig | None = None,
                       rank: RankFn | None = None, name_of: Callable[[int], str] | None = None,
                       batch_size: int = GENERATION_BATCH_SIZE, exclude_mentioned: bool = True) -> list[GeneratedResponse]:
    """Generate a response for each sample and fill its placeholders with ``rank(sample)``.

    ``exclude_mentioned``: skip items already in the sample's context (``sample.mentioned_items``).
    Without ``rank`` the placeholders stay in ``text``.
    """
    collator = generator.make_collator(generation=True)
    names = name_of or str
    out: list[GeneratedResponse] = []
    for start in range(0, len(samples), batch_size):
        chunk = list(samples[start:start + batch_size])
        with borrowed_cores():  # decoding is forward only: the same tokens on any number of threads
            follow_share()
            batch_ids = generate_ids(generator, collator(chunk), config)
        for s, ids in zip(chunk, batch_ids):
            raw = decode(generator.tokenizer, ids)
            text, items = raw, []
            if rank is not None and generator.config.placeholder in raw:
                excl = getattr(s, "mentioned_items", ()) if exclude_mentioned else ()
                text, items = fill_placeholders(raw, rank(s), names, generator.config.placeholder, excl)
            out.append(GeneratedResponse(raw, text, items, ids))
    return out


def recommender_ranker(recommender, *, max_length: int = 200, top: int = 50) -> RankFn:
    """``rank(sample)``: item entity ids by the recommender's score (Eq. 23), best first, ``top`` of them.

    Conversation samples carry no target; the recommender's collator needs one, so a dummy item is set
    (labels are not read by ``score_items``).
    """
    from mscrs_core.models.collate import RecCollator

    features = getattr(recommender, "context_features", None)
    if features is None and recommender.config.context_encoder == "text_encoder":  # a reloaded model: encode live
        from mscrs_core.features.context_text import ContextTextFeatures

        features = recommender.context_features = ContextTextFeatures()
    collator = RecCollator(recommender.tokenizer, max_length=max_length,
                           max_entities=recommender.prompt_encoder.max_entities, context_features=features)
    item_ids = recommender.item_ids
    dummy = int(item_ids[0])

    def rank(sample) -> list[int]:
        s = sample if getattr(sample, "target", None) is not None else dataclasses.replace(sample, target=dummy)
        device = item_ids.device
        batch = {k: v.to(device) for k, v in collator([s]).items()}
        recommender.eval()
        scores = recommender.score_items(batch)[0]
        order = scores.argsort(descending=True)[:top]
        return [int(item_ids[i]) for i in order]

    return rank
