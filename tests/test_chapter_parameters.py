"""A chapter's parameters cell and its run configuration cannot drift apart.

Chapters 3 and 6 are the units of every experiment: their ``parameters`` cell (jupytext percent,
``# %% tags=["parameters"]``) declares one variable per field of :class:`RecRunConfig` /
:class:`ConversationRunConfig`, and ``RunConfig.from_namespace`` builds the run from them. Nothing else ties the
cell's values to the dataclass defaults, so these tests do:

* every field of the run configuration (read from the dataclass, so new fields are covered at once) is a
  parameter of its run chapter, with the dataclass default: the same value *and* type, since ``2`` and ``2.0``
  give different run digests. A chapter that means to differ lists the field in ``CHAPTER_OVERRIDES`` with
  its reason;
* a run chapter's other parameters are the few plumbing ones listed in ``RUN_CHAPTER_EXTRAS`` (a misspelt
  field would otherwise be an unused variable);
* in the chapters that sweep runs (2, 4, 5, 7, 8), a parameter named like a run-configuration field has that
  field's default too, unless listed as an override;
* every key that ``profiles.yml`` sets for a chapter is a parameter of that chapter, of the declared type; a run
  chapter's profile builds a valid run configuration; ``base`` and ``position_budget`` dicts name fields.
"""
from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from mscrs_core.book import runner
from mscrs_core.experiments.conversation import ConversationRunConfig
from mscrs_core.experiments.recommendation import RecRunConfig
from mscrs_core.experiments.sweep import CONVERSATION_RUN_CHAPTER, RUN_CHAPTER, run_config_class

RUN_CHAPTERS = (RUN_CHAPTER, CONVERSATION_RUN_CHAPTER)
#: chapters that sweep runs, and the run configurations whose field names their parameters may reuse
SWEEP_CHAPTERS = {
    "02_semantic_graphs": (RecRunConfig,),
    "04_recommendation": (RecRunConfig,),
    "05_ablations": (RecRunConfig,),
    "07_conversation": (ConversationRunConfig,),
    "08_talk": (RecRunConfig, ConversationRunConfig),
}
#: a run chapter's parameters that are not run-configuration fields (where results go, how it was called)
RUN_CHAPTER_EXTRAS = {
    RUN_CHAPTER: {"results_dir", "data_root", "check_checksums", "sweep_point", "position_budget"},
    CONVERSATION_RUN_CHAPTER: {"results_dir", "data_root", "check_checksums", "sweep_point"},
}
#: (chapter, parameter) -> why its value differs from the run configuration's default
CHAPTER_OVERRIDES = {
    ("02_semantic_graphs", "k"): "one k per dataset (the paper's best, Figure 5); the runs take it as RecRunConfig.k",
    ("04_recommendation", "k"): "one k per dataset (the paper's best, Figure 5); each point passes its dataset's k",
}
PARAMETERS_TAG = re.compile(r"^#\s*%%.*\btags\s*=\s*\[[^\]]*[\"']parameters[\"']")


class Expression(str):
    """The source of a parameter whose default is an expression, not a literal (no type to check against)."""


def chapter_source(chapter: str) -> Path:
    return runner.notebooks_dir() / f"{chapter}.py"


def parameters_cell(chapter: str) -> dict[str, object]:
    """The assignments of ``chapter``'s parameters cell: name -> literal value (an expression stays its source)."""
    src = chapter_source(chapter)
    lines = src.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if PARAMETERS_TAG.match(line)]
    assert len(starts) == 1, f"{src}: expected one cell tagged 'parameters', found {len(starts)}"
    end = next((i for i in range(starts[0] + 1, len(lines)) if lines[i].startswith("# %%")), len(lines))
    tree = ast.parse("\n".join(lines[starts[0] + 1:end]), filename=str(src))
    out: dict[str, object] = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), \
            f"{src}: the parameters cell holds only 'name = value' lines, found {ast.unparse(node)!r}"
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:  # e.g. a list built from another parameter
            out[node.targets[0].id] = Expression(ast.unparse(node.value))
    return out


def same(a: object, b: object) -> bool:
    """Equal values of the same type (``True`` is not ``1``, ``2`` is not ``2.0``: both change a run digest)."""
    return type(a) is type(b) and a == b


def fields(cls: type) -> dict[str, "Default"]:
    """Flat parameter name -> its default, read from the run configuration and its sections each time (a
    section's defaults are the model's or the trainer's own: ``RecommenderConfig`` writes them once)."""
    defaults = cls().flat()
    # a field the configuration resolves when it is made ("auto" -> the machine's dtype) keeps its declared default
    from mscrs_core.experiments.recommendation import BackboneConfig

    defaults.update({f.name: f.default for f in dataclasses.fields(BackboneConfig) if f.name in RESOLVED_FIELDS})
    return {name: Default(defaults[name]) for name in cls.field_names()}


#: fields whose value a configuration resolves on construction (``BackboneConfig.backbone_dtype``: "auto")
RESOLVED_FIELDS = {"backbone_dtype"}


@dataclasses.dataclass(frozen=True)
class Default:
    default: object


def test_parser_reads_the_cell_papermill_reads():
    for chapter in RUN_CHAPTERS:
        assert set(parameters_cell(chapter)) == set(runner.declared_parameters(chapter_source(chapter)))


@pytest.mark.parametrize("chapter", RUN_CHAPTERS)
def test_run_chapter_declares_every_field_with_its_default(chapter):
    cls = run_config_class(chapter)
    params = parameters_cell(chapter)
    problems = []
    for name, f in fields(cls).items():
        if name not in params:
            problems.append(f"{cls.__name__}.{name} (default {f.default!r}) is not a parameter of {chapter}")
        elif (chapter, name) not in CHAPTER_OVERRIDES and not same(params[name], f.default):
            problems.append(f"{chapter}: {name} = {params[name]!r} but {cls.__name__}.{name} defaults to "
                            f"{f.default!r} (change one, or list it in CHAPTER_OVERRIDES with the reason)")
    extra = set(params) - set(fields(cls)) - RUN_CHAPTER_EXTRAS[chapter]
    problems += [f"{chapter}: parameter {name!r} is no {cls.__name__} field (misspelt, or a field that went?)"
                 for name in sorted(extra)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("chapter", sorted(SWEEP_CHAPTERS))
def test_sweep_chapter_parameters_named_like_fields_keep_the_defaults(chapter):
    params = parameters_cell(chapter)
    problems = []
    for cls in SWEEP_CHAPTERS[chapter]:
        for name, f in fields(cls).items():
            if name in params and (chapter, name) not in CHAPTER_OVERRIDES and not same(params[name], f.default):
                problems.append(f"{chapter}: {name} = {params[name]!r} but {cls.__name__}.{name} defaults to "
                                f"{f.default!r} (change one, or list it in CHAPTER_OVERRIDES with the reason)")
    assert not problems, "\n".join(problems)


def test_every_listed_override_is_still_one():
    for (chapter, name), reason in CHAPTER_OVERRIDES.items():
        assert reason.strip(), (chapter, name)
        params = parameters_cell(chapter)
        assert name in params, f"CHAPTER_OVERRIDES: {chapter} has no parameter {name!r}"
        classes = (run_config_class(chapter),) if chapter in RUN_CHAPTERS else SWEEP_CHAPTERS[chapter]
        defaults = [fields(c)[name].default for c in classes if name in fields(c)]
        assert defaults, f"CHAPTER_OVERRIDES: {name!r} is no field of {[c.__name__ for c in classes]}"
        assert not all(same(params[name], d) for d in defaults), \
            f"CHAPTER_OVERRIDES: {chapter}.{name} = {params[name]!r} equals the default now; drop the entry"


def profile_cases():
    cfg = runner.load_profiles()
    return [(p, c) for p in cfg["profiles"] for c in cfg["chapters"]]


def test_profiles_name_only_chapters():
    cfg = runner.load_profiles()
    for profile, entries in cfg["profiles"].items():
        unknown = set(entries or {}) - set(cfg["chapters"]) - {"all"}
        assert not unknown, f"profiles.yml, profile {profile!r}: {sorted(unknown)} are not chapters"


@pytest.mark.parametrize("profile,chapter", profile_cases())
def test_profile_keys_are_parameters_of_the_chapter(profile, chapter):
    params = parameters_cell(chapter)
    given = runner.profile_parameters(chapter, profile)
    problems = []
    for name, value in given.items():
        if name not in params:
            problems.append(f"profiles.yml {profile}/{chapter}: {name!r} is not a parameter of {chapter} "
                            f"(it declares {sorted(params)})")
        elif not isinstance(params[name], Expression) and not runner._compatible(params[name], value):
            problems.append(f"profiles.yml {profile}/{chapter}: {name} = {value!r} is a {type(value).__name__}, "
                            f"the chapter's default {params[name]!r} a {type(params[name]).__name__}")
    assert not problems, "\n".join(problems)
    if chapter in RUN_CHAPTERS:  # the profile's values make a valid run (types and ranges)
        cls = run_config_class(chapter)
        cls.from_params({k: v for k, v in given.items() if k in fields(cls)})
        budget = given.get("position_budget", {})
        assert set(budget) <= set(fields(cls)), f"{profile}/{chapter}: position_budget names no fields " \
                                                f"{sorted(set(budget) - set(fields(cls)))}"
    base = given.get("base", parameters_cell(chapter).get("base", {}))
    if chapter in SWEEP_CHAPTERS and isinstance(base, dict):
        names = set().union(*(fields(c) for c in SWEEP_CHAPTERS[chapter]))
        assert set(base) <= names, f"{profile}/{chapter}: base names no run fields {sorted(set(base) - names)}"
