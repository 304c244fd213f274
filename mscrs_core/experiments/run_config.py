"""What every run configuration shares: composition from sections, construction from chapter parameters, and
a content digest.

A run configuration is a frozen dataclass whose fields are a few run-level values (dataset, model, seed) and
*sections*, each the configuration of one part of the run owned by the module that uses it: the data it reads,
its graphs, its backbone, the model's own config (e.g. :class:`~mscrs_core.models.recommender.RecommenderConfig`,
where every model default is written once) and its training schedule. A chapter's ``parameters`` cell stays flat
(papermill sets one name at a time: ``-p k 20``); :meth:`RunConfig.of` routes each flat name to its section,
:meth:`RunConfig.flat` gives them back, and ``cfg.k`` reads a section's field directly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar


class RunConfig:
    """Mixin for the frozen dataclasses that configure one run (:class:`~.recommendation.RecRunConfig`,
    :class:`~.conversation.ConversationRunConfig`); a run's folder name ends with :meth:`digest`.

    A run's identity must survive renames and additions, or every finished result of a book would be
    recomputed after a refactor: :attr:`DIGEST_NAMES` maps a renamed field to the name the digest has always
    used, and a field listed in :attr:`DIGEST_SINCE_DEFAULTS` (added after runs were recorded) enters the digest
    only when it is set away from the value that reproduces what the runs before it did: its default, or, for a
    field whose default changed after it was added, its entry in :attr:`DIGEST_LEGACY_VALUES` (so a new default
    gets new digests, and the finished runs of the old one are never taken for runs of the new).
    """

    #: field name -> the name under which the digest (and older result files) know it
    DIGEST_NAMES: ClassVar[dict[str, str]] = {}
    #: fields that enter the digest only when they differ from their default
    DIGEST_SINCE_DEFAULTS: ClassVar[tuple[str, ...]] = ()
    #: fields of DIGEST_SINCE_DEFAULTS whose default changed: the value the runs recorded before them had
    DIGEST_LEGACY_VALUES: ClassVar[dict[str, Any]] = {}
    #: the fields that are sections (dataclasses of their own); their fields are the flat parameter names
    SECTIONS: ClassVar[tuple[str, ...]] = ()

    # -- composition ------------------------------------------------------------------------------------------
    @classmethod
    def section_defaults(cls) -> dict[str, Any]:
        """Section name -> the run's default value of that section (which may differ from the section class's own
        defaults: a conversation run puts the prompt after the context, the model's config before it)."""
        return {f.name: f.default_factory() for f in dataclasses.fields(cls) if f.name in cls.SECTIONS}

    @classmethod
    def section_classes(cls) -> dict[str, type]:
        """Section name -> its dataclass."""
        return {name: type(value) for name, value in cls.section_defaults().items()}

    @classmethod
    def field_names(cls) -> list[str]:
        """Every flat parameter name: the run-level fields, then each section's fields."""
        sections = cls.section_classes()
        out = []
        for f in dataclasses.fields(cls):
            out += [g.name for g in dataclasses.fields(sections[f.name])] if f.name in sections else [f.name]
        if len(set(out)) != len(out):
            raise TypeError(f"{cls.__name__}: a flat name belongs to two sections: {sorted(out)}")
        return out

    @classmethod
    def of(cls, **flat: Any):
        """The configuration from flat names (each routed to its section); an unknown name is an error."""
        sections = cls.section_classes()
        owner = {g.name: sec for sec, c in sections.items() for g in dataclasses.fields(c)}
        top = {f.name for f in dataclasses.fields(cls)} - set(sections)
        unknown = sorted(set(flat) - top - set(owner))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(cls.field_names())}")
        parts: dict[str, dict[str, Any]] = {sec: {} for sec in sections}
        for k, v in flat.items():
            if k in owner:
                parts[owner[k]][k] = v
        defaults = cls.section_defaults()
        return cls(**{k: v for k, v in flat.items() if k in top},
                   **{sec: dataclasses.replace(defaults[sec], **kw) for sec, kw in parts.items()})

    def replace(self, **flat: Any):
        """A copy with some flat fields changed."""
        return type(self).of(**{**self.flat(), **flat})

    def __getattr__(self, name: str) -> Any:
        # flat read access (cfg.k, cfg.lr); only reached when ``name`` is not a field of the run itself
        if name.startswith("__") or name in type(self).SECTIONS:
            raise AttributeError(name)
        for sec in type(self).SECTIONS:
            part = self.__dict__.get(sec)
            if part is not None and name in {f.name for f in dataclasses.fields(part)}:
                return getattr(part, name)
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    @classmethod
    def from_params(cls, params: dict[str, Any]):
        """The configuration from a chapter's parameters; a name the class does not have is an error."""
        return cls.of(**params)

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]):
        """The configuration from a run chapter's globals (its parameters cell defines every field)."""
        missing = [n for n in cls.field_names() if n not in namespace]
        if missing:
            raise ValueError(f"{cls.__name__}: the chapter does not define {missing}")
        return cls.of(**{n: namespace[n] for n in cls.field_names()})

    def run_line(self, result: dict[str, Any]) -> str:
        """One line saying whether ``result`` was trained now or loaded, and its compute time."""
        how = "loaded (finished before)" if result.get("reused") else "trained now"
        return f"run {result['name']}: {how}, {result.get('seconds', 0)} s of compute"

    def flat(self) -> dict[str, Any]:
        """Every field by its chapter-parameter name (what ``result.json`` records as ``config``)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out.update(dataclasses.asdict(value) if f.name in self.SECTIONS else {f.name: value})
        return out

    def identity(self) -> dict[str, Any]:
        """What :meth:`digest` hashes: :meth:`flat` under the digest's names, later fields only when set."""
        legacy = {**type(self)().flat(), **self.DIGEST_LEGACY_VALUES}
        return {self.DIGEST_NAMES.get(k, k): v for k, v in self.flat().items()
                if not (k in self.DIGEST_SINCE_DEFAULTS and v == legacy[k])}

    def digest(self) -> str:
        """12 hex digits of the SHA-256 of :meth:`identity` (sorted JSON): equal configurations, equal digests."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_record(cls, config: dict[str, Any]):
        """The configuration a ``result.json`` recorded (older names and missing later fields accepted)."""
        back = {v: k for k, v in cls.DIGEST_NAMES.items()}
        params = {back.get(k, k): v for k, v in config.items()}
        # a field the record predates had the value the runs of that time ran with, not today's default
        return cls.from_params({**{k: v for k, v in cls.DIGEST_LEGACY_VALUES.items() if k not in params}, **params})

    # -- sweep scheduling hooks (mscrs_core.experiments.sweep) ---------------------------------------------------
    def shared_caches(self) -> tuple[tuple, ...]:
        """Keys of the on-disk caches this run shares with other runs (a trained miniature backbone, features).

        A sweep prepares each key once, alone, before it starts runs side by side (:meth:`prepare_caches`)."""
        return ()

    def prepare_caches(self, data_root: str | None = None, cache_dir: str | None = None) -> None:
        """Fill the caches named by :meth:`shared_caches` (instant when they exist already)."""

    def relative_cost(self) -> float:
        """A rough relative compute cost; a sweep starts the costliest runs first so that none is left alone
        at the end."""
        return 1.0
