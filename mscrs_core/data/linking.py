"""Dictionary entity linking for ReDial text.

KGSF's n-gram linker (``text_dict.pkl``) was never published, so non-movie
entities (actors, directors, genres, ...) are linked with a dictionary built
from the knowledge graph's own entity names and a longest-match n-gram lookup:

* a name is the URI's resource part, underscores as spaces, the trailing
  disambiguation ``(...)`` dropped, lower-cased (``Quentin_Tarantino`` ->
  ``quentin tarantino``);
* genre pages ``X_film`` (``Horror_film``) also answer to ``x`` (``horror``),
  because that is how people say it; so do the pages ``X_fiction`` of the film
  genres in :data:`FICTION_GENRES` where no ``X_film`` exists (INSPIRED's graph
  has *Horror fiction* and no *Horror film*), never other ``X_fiction`` pages
  ("genre", "fan" and "literary" are not genres people ask a film for);
* at each token the longest n-gram (up to ``max_ngram`` tokens) present in the
  dictionary wins, and its tokens are consumed;
* single-token names are linked only when the token is capitalised in the text
  (a proper noun) or is a genre alias, and never when it is a common English
  word (``STOPWORDS``): single words like "good" or "love" are DBpedia pages too
  and would flood the prompt with noise;
* movie entities are left out of the dictionary: movies are linked through
  ReDial's ``@movieId`` mentions, which are exact; where they are in it (the
  chat, where people type titles), ``cased`` entities link only from a span
  with a capitalised token: many titles are everyday phrases ("a scary movie",
  "I need to get out"), and written as titles they are capitalised ("Scary
  Movie", "Get Out");
* a name shared by several entities resolves to the one with the highest
  degree in the graph (the best-connected reading), ties to the lowest id.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .kg import entity_name

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?|[^\sA-Za-z0-9]")
_PAREN = re.compile(r"\s*\([^)]*\)\s*$")

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers herself
him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or
other our ours ourselves out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were what when where which while who whom why
will with would you your yours yourself yourselves yes yeah hi hello hey ok okay oh well thanks thank please sure
good great nice cool fun funny love like liked movie movies film films watch watched seen see saw one two three
really much many lot time think know want got get go going new old best better bad big little man men woman women
girl boy life day night world home family friend friends story end last first still kind sort thing things way
""".split())


#: the first words of ``X fiction`` pages that name a film genre: an ``X fiction`` page answers to ``x`` alone when
#: the graph has no ``X film`` page (module docstring)
FICTION_GENRES = frozenset("""
action adventure crime detective fantasy gothic horror mystery spy superhero supernatural suspense thriller western
""".split())


def normalise(name: str) -> str:
    return " ".join(t.lower() for t in _TOKEN.findall(name))


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


@dataclass
class LinkResult:
    entities: list[int]
    spans: list[tuple[int, int, int]]  # (start token, end token, entity id)


class EntityLinker:
    """Longest-match n-gram lookup of entity names in text (see the module docstring)."""

    def __init__(self, names: dict[str, list[int]], single_ok: dict[str, bool], max_ngram: int = 5,
                 cased: frozenset[int] = frozenset()):
        self.names = names
        self.single_ok = single_ok  # single-token name -> linkable even when lower-case (genre alias)
        self.max_ngram = max_ngram
        self.cased = cased  # entities a span must show a capital letter for (titles that are everyday phrases)

    @classmethod
    def from_vocabulary(cls, entity2id: dict[str, int], *, exclude: set[int] | None = None,
                        degree: np.ndarray | None = None, max_ngram: int = 5,
                        cased: set[int] | None = None) -> "EntityLinker":
        """The linker of the entities of ``entity2id`` but ``exclude``; names shared by several entities resolve by
        ``degree``; ``cased`` entities (e.g. the items, in a chat) link only from a span with a capitalised
        token (module docstring)."""
        exclude = exclude or set()
        cands: dict[str, list[int]] = defaultdict(list)
        alias_single: dict[str, bool] = {}
        film_genres: set[str] = set()
        fiction: dict[str, list[int]] = defaultdict(list)
        for uri, eid in entity2id.items():
            if eid in exclude or not uri.startswith("<http"):
                continue
            base = entity_name(uri)
            plain = normalise(_PAREN.sub("", base))
            if not plain or plain.isdigit() or len(plain) < 3:
                continue
            keys = [plain]
            if plain.endswith(" film") and "(" not in base and not plain[:4].isdigit():
                keys.append(plain[: -len(" film")])  # "horror film" -> "horror"
                alias_single[keys[-1]] = True
                film_genres.add(keys[-1])
            elif plain.endswith(" fiction") and "(" not in base and plain[: -len(" fiction")] in FICTION_GENRES:
                fiction[plain[: -len(" fiction")]].append(eid)  # "horror fiction" -> "horror", if no "horror film"
            for k in keys:
                n = len(k.split())
                if n == 1 and k in STOPWORDS:
                    continue
                if n <= max_ngram:
                    cands[k].append(eid)
        for genre, ids in fiction.items():
            if genre not in film_genres:
                cands[genre].extend(ids)
                alias_single[genre] = True
        deg = degree if degree is not None else np.zeros(len(entity2id) + 1)
        names = {k: sorted(v, key=lambda e: (-float(deg[e]), e)) for k, v in cands.items()}
        return cls(names, alias_single, max_ngram, frozenset(cased or ()))

    def link(self, text: str) -> LinkResult:
        toks = tokenize(text)
        low = [t.lower() for t in toks]
        out: list[int] = []
        spans = []
        i = 0
        while i < len(toks):
            hit = None
            for n in range(min(self.max_ngram, len(toks) - i), 0, -1):
                key = " ".join(low[i:i + n])
                if key not in self.names:
                    continue
                if n == 1 and not (self.single_ok.get(key) or toks[i][:1].isupper()):
                    continue
                cands = self.names[key]
                if self.cased and not any(t[:1].isupper() for t in toks[i:i + n]):
                    cands = [e for e in cands if e not in self.cased]  # an everyday phrase, not a title
                    if not cands:
                        continue
                hit = (n, cands[0])
                break
            if hit is None:
                i += 1
                continue
            n, eid = hit
            spans.append((i, i + n, eid))
            if eid not in out:
                out.append(eid)
            i += n
        return LinkResult(out, spans)

    def __len__(self) -> int:
        return len(self.names)
