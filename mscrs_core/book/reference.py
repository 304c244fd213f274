"""The book's reference pages, written from the library itself: ``book/equations.md`` and ``book/api.md``.

* :func:`equations_page`: the equation-to-code table, from :data:`mscrs_core.book.equations.EQUATIONS`.
* :func:`api_page`: one ``automodule`` per public module of ``mscrs_core`` (found by walking the package, so a
  new or renamed module changes the page), grouped by subpackage; Sphinx autodoc fills in the docstrings.

``python -m mscrs_core.book.reference --write`` rewrites both pages; ``--check`` (and
``tests/test_book_show.py``) fails when either is out of date.
"""
from __future__ import annotations

import argparse
import pkgutil
import sys
from pathlib import Path

from .equations import EQUATIONS

#: subpackage -> section title of the API page, in page order (modules outside them go under "Other modules")
API_GROUPS: dict[str, str] = {
    "mscrs_core.graphs": "Semantic graphs (paper section 4.2)",
    "mscrs_core.features": "Item features (section 4.1)",
    "mscrs_core.models": "Models (sections 4.3 and 4.4)",
    "mscrs_core.training": "Training",
    "mscrs_core.evaluation": "Evaluation",
    "mscrs_core.baselines": "Baselines",
    "mscrs_core.data": "Data readers and importers",
    "mscrs_core.experiments": "Experiments: run configurations, runs, sweeps",
    "mscrs_core.chat": "Talking to the system: chat checkpoints, session, command line",
    "mscrs_core.book": "The book's own helpers",
}

def public_modules(package: str = "mscrs_core") -> list[str]:
    """Every importable module of ``package`` whose dotted name has no part starting with ``_``, sorted."""
    import importlib

    pkg = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]
    return sorted(n for n in names if not any(p.startswith("_") for p in n.split(".")))


def _xref(dotted: str) -> str:
    """``{py:obj}`Class.method <module.Class.method>``` with the text after the module."""
    from .equations import resolve

    obj = resolve(dotted)
    module = getattr(obj, "__module__", None) or dotted.rsplit(".", 1)[0]
    text = dotted[len(module) + 1:] if dotted.startswith(module + ".") else dotted
    return f"{{py:obj}}`{text} <{dotted}>`"


SECTIONS = {"4.1": "Multi-modal feature encoding", "4.2": "Multi-modal semantic graph modelling",
            "4.3": "Semantic graph prompt learning for recommendation",
            "4.4": "Semantic graph prompt learning for conversation"}


def equations_page() -> str:
    """``book/equations.md``: one table per method section of the paper, one row per numbered equation."""
    lines = [
        "# Equations and the code that computes them",
        "",
        "Every numbered equation of the paper, as printed (the paper's symbols), with the library code that",
        "computes it (each name links to its entry in the {doc}`api`) and the chapter that shows the equation",
        "beside that code. The chapters pull the code from the library with",
        "`mscrs_core.book.show.equation_with_code`, so what they show is what runs. This page is written from",
        "`mscrs_core/book/equations.py` by `python -m mscrs_core.book.reference --write`; the tests fail when it",
        "is out of date or names code that no longer exists.",
        "",
    ]
    for sec, title in SECTIONS.items():
        rows = [(n, eq) for n, eq in sorted(EQUATIONS.items()) if eq.section == sec]
        chapters = sorted({eq.chapter for _, eq in rows})
        shown = " and ".join(f"{{doc}}`/build/book/{c}`" for c in chapters)
        lines += [f"## {sec} {title}", "", f"Shown beside their code in {shown}.", "",
                  "| Eq. | Equation, and the code that computes it |", "|---|---|"]
        for n, eq in rows:
            # one column for both: the widest equations leave no room beside them for a column of names
            code = ", ".join(_xref(d) for d in eq.implemented_by)
            lines.append(f"| ({n}) | ${eq.latex}$<br>{eq.what[0].upper()}{eq.what[1:]}: {code} |")
        notes = [f"* **Eq. ({n}).** {eq.note}." for n, eq in rows if eq.note]
        lines += ["", "Where the book departs from the printed equation, or what it leaves idle:", "", *notes, ""] \
            if notes else [""]
    lines += [
        "## What is not run, and why",
        "",
        "All 29 equations are implemented. Some are not exercised by the book's runs, for want of inputs, and",
        "are covered by tests instead:",
        "",
        "* **Eq. (2) with an LLM.** There is no model endpoint offline; `OfflineDescriber` writes the four aspects",
        "  of the paper's prompt (Figure 3) from the data. `LLMDescriber` sends the paper's prompt to any",
        "  OpenAI-compatible endpoint (tested against a local stub server).",
        "* **Eq. (4)-(5), and so Eq. (13) and the image half of Eq. (14).** The IMDb stills the paper collected are",
        "  not available here, so no item has images and no image graph is built. The image encoder runs on",
        "  images the tests create; `image_root` / `image_encoder` (chapter 2's parameters) switch it on.",
        "",
        "Where the book's default run differs from the printed equation (the backbone, the prompt's position, the",
        "scoring head), the notes under each table say so and the chapter states it; the paper's form is always an",
        "option (`RecommenderConfig.paper()`, `prompt_position=\"prefix\"`, `variant=\"paper\"`), and the `paper`",
        "profile (`mscrs book --profile paper`) runs it.",
        "",
    ]
    return "\n".join(lines)


def _group(module: str) -> str:
    for prefix in API_GROUPS:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return ""


def api_page(modules: list[str] | None = None) -> str:
    """``book/api.md``: every public module of ``mscrs_core`` through ``automodule``, grouped by subpackage."""
    modules = public_modules() if modules is None else sorted(modules)
    groups: dict[str, list[str]] = {g: [] for g in [*API_GROUPS, ""]}
    for m in modules:
        groups[_group(m)].append(m)
    lines = [
        "# API reference",
        "",
        "Every public module of `mscrs_core` with its classes and functions, from their docstrings (Sphinx",
        "autodoc). A docstring names the paper equation it computes (\"Eq. (7)\"); {doc}`equations` maps every",
        "equation to its code. This page is written by `python -m mscrs_core.book.reference --write` from the",
        "package's modules; the tests fail when a module is missing from it.",
        "",
    ]
    for prefix, title in [*API_GROUPS.items(), ("", "Other modules")]:
        members = groups[prefix]
        if not members:
            continue
        lines += [f"## {title}", ""]
        for m in members:  # eval-rst: docstrings are reStructuredText, which a MyST directive would read as Markdown
            lines += [f"### `{m}`", "", "```{eval-rst}", f".. automodule:: {m}", "```", ""]
    return "\n".join(lines)


PAGES = {"equations.md": equations_page, "api.md": api_page}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mscrs_core.book.reference", description=__doc__.split("\n")[0])
    parser.add_argument("--book-dir", default=str(Path(__file__).resolve().parents[2] / "book"))
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the pages")
    mode.add_argument("--check", action="store_true", help="exit 1 when a page is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, make in PAGES.items():
        path = Path(args.book_dir) / name
        text = make()
        if args.write:
            path.write_text(text)
            print(f"wrote {path}")
        elif not path.is_file() or path.read_text() != text:
            stale.append(str(path))
    if stale:
        print("out of date (python -m mscrs_core.book.reference --write): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
