"""Show the library beside the paper in a chapter, d2l style: the equation, then the code that computes it.

The code shown is the library's own source (``inspect.getsource``), never a copy in the notebook, so a chapter
cannot drift from what runs. Each helper displays one Markdown output: display math (``$$ ... $$``) and a fenced
``python`` block, which Jupyter renders as it is and the book renders as MyST (``nb_render_markdown_format: myst``
in ``_config.yml``: the math goes through MathJax, the code through Sphinx's highlighter).

* :func:`show_source` -- the source of one or more functions, methods or classes.
* :func:`equation_with_code` -- a paper equation (its number, looked up in
  :data:`mscrs_core.book.equations.EQUATIONS`, or LaTeX) above the source that implements it.
* :func:`glue_numbers` -- findings into the prose through myst-nb ``glue`` (as plain Python numbers, so
  ``{glue:text}`key:.3f``` formats them); :func:`direction` -- the word ("above", "below") between two of them.
* :func:`glue_markdown` -- whole sentences written from the findings (e.g. one that says a dataset was not run,
  where a number would read ``nan``) into the prose as Markdown, ``{glue:md}`key```.
"""
from __future__ import annotations

import ast
import html
import inspect
import textwrap
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["qualified_name", "source_of", "source_markdown", "equation_markdown", "show_source",
           "equation_with_code", "plain", "plain_numbers", "direction", "glue_numbers", "glue_markdown"]


def _unwrap(obj: Any) -> Any:
    """The function behind a property, classmethod/staticmethod or bound method."""
    if isinstance(obj, property):
        return obj.fget
    if isinstance(obj, (classmethod, staticmethod)):
        return obj.__func__
    return inspect.unwrap(getattr(obj, "__func__", obj))


def qualified_name(obj: Any) -> str:
    """``module.Qualname`` of a function, method or class (``mscrs_core.graphs.lightgcn.LightGCN.forward``)."""
    obj = _unwrap(obj)
    module = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if module is None or qual is None:
        raise TypeError(f"no qualified name for {obj!r}: pass a function, method or class")
    return f"{module}.{qual}"


def _location(obj: Any) -> str:
    """``mscrs_core/graphs/lightgcn.py:128`` (path relative to the package's parent folder when possible)."""
    path = Path(inspect.getsourcefile(obj) or "?")
    line = inspect.getsourcelines(obj)[1]
    module = inspect.getmodule(obj)
    top = (module.__name__.split(".")[0] if module else "")
    parts = path.parts
    if top in parts:
        path = Path(*parts[len(parts) - 1 - parts[::-1].index(top):])
    return f"{path.as_posix()}:{line}"


def _drop_docstring(source: str) -> str:
    """``source`` (one def or class, dedented) without its docstring."""
    node = ast.parse(source).body[0]
    body = getattr(node, "body", None)
    if not body or not isinstance(body[0], ast.Expr) or not isinstance(getattr(body[0], "value", None), ast.Constant) \
            or not isinstance(body[0].value.value, str):
        return source
    lines = source.splitlines(keepends=True)
    doc = body[0]
    if len(body) == 1:  # a body that is only a docstring keeps a placeholder so the code stays valid
        indent = lines[doc.lineno - 1][: len(lines[doc.lineno - 1]) - len(lines[doc.lineno - 1].lstrip())]
        return "".join(lines[: doc.lineno - 1] + [indent + "...\n"] + lines[doc.end_lineno:])
    return "".join(lines[: doc.lineno - 1] + lines[doc.end_lineno:])


def source_of(obj: Any, *, docstring: bool = True) -> str:
    """The dedented source of ``obj`` (function, method, property, class), optionally without its docstring."""
    obj = _unwrap(obj)
    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError) as err:
        raise TypeError(f"no source for {obj!r}: pass a function, method or class defined in a .py file") from err
    node = ast.parse(source).body[0]
    if getattr(node, "name", None) != obj.__name__:
        # inspect reads the file as it is now, at the line numbers of the code that was imported
        raise RuntimeError(f"{qualified_name(obj)}: its file changed since it was imported; restart the kernel")
    if not docstring:
        source = _drop_docstring(source)
    return source.rstrip() + "\n"


def _fence(code: str, lang: str = "python") -> str:
    ticks = "```"
    while ticks in code:  # a fence longer than any run of backticks inside
        ticks += "`"
    return f"{ticks}{lang}\n{code.rstrip()}\n{ticks}"


def source_markdown(*objs: Any, docstring: bool = True, fold: int | None = None) -> str:
    """Markdown for the sources of ``objs``: per object a caption (qualified name, file:line) and a fenced block.

    ``fold``: a source longer than this many lines is folded behind a ``<details>`` summary (open it to read)."""
    if not objs:
        raise ValueError("source_markdown: give at least one function, method or class")
    parts = []
    for obj in objs:
        fn = _unwrap(obj)
        code = source_of(fn, docstring=docstring)
        caption = f"`{qualified_name(fn)}` ({_location(fn)})"
        n_lines = code.count("\n")
        if fold is not None and n_lines > fold:
            # blank lines around the fence: Markdown inside an HTML block is parsed after a blank line
            summary = f"<code>{html.escape(qualified_name(fn))}</code> ({_location(fn)}): {n_lines} lines"
            parts.append(f"<details><summary>{summary}</summary>\n\n{_fence(code)}\n\n</details>")
        else:
            parts.append(f"{caption}\n\n{_fence(code)}")
    return "\n\n".join(parts)


def _latex(equation: int | str) -> tuple[int | None, str]:
    """(paper number or None, LaTeX) of a paper equation number or of LaTeX given as is."""
    if isinstance(equation, int) and not isinstance(equation, bool):
        from .equations import EQUATIONS

        if equation not in EQUATIONS:
            raise KeyError(f"the paper has no Eq. ({equation}); numbered equations: 1..{max(EQUATIONS)}")
        return equation, EQUATIONS[equation].latex
    if isinstance(equation, str) and equation.strip():
        return None, equation.strip().strip("$").strip()
    raise TypeError(f"equation: expected an equation number or LaTeX, got {equation!r}")


def equation_markdown(equations: int | str | Iterable[int | str], *objs: Any, docstring: bool = True,
                      note: str = "", fold: int | None = None) -> str:
    """Markdown: the equation(s) as display math (``\\tag``-numbered as in the paper), an optional note, then
    the source of ``objs`` (:func:`source_markdown`)."""
    eqs = [equations] if isinstance(equations, (int, str)) else list(equations)
    if not eqs:
        raise ValueError("equation_markdown: give at least one equation")
    blocks = []
    for eq in eqs:
        number, latex = _latex(eq)
        if number is None:
            blocks.append(f"$$\n{latex}\n$$")
        elif "\\\\" in latex:
            # Sphinx wraps multi-line $$ math in a split environment, where \tag is not allowed
            blocks.append(f"\\begin{{equation*}}\n{latex} \\tag{{{number}}}\n\\end{{equation*}}")
        else:
            blocks.append(f"$$\n{latex} \\tag{{{number}}}\n$$")
    text = "\n\n".join(blocks)
    if note:
        text += "\n\n" + note.strip()
    if objs:
        text += "\n\n" + source_markdown(*objs, docstring=docstring, fold=fold)
    return text


def _display_markdown(text: str) -> None:
    from IPython.display import Markdown, display

    display(Markdown(text))


def show_source(*objs: Any, docstring: bool = True, fold: int | None = None) -> None:
    """Display the library source of ``objs`` (functions, methods, classes) as highlighted code."""
    _display_markdown(source_markdown(*objs, docstring=docstring, fold=fold))


def equation_with_code(equations: int | str | Iterable[int | str], *objs: Any, docstring: bool = True,
                       note: str = "", fold: int | None = None) -> None:
    """Display a paper equation (number, e.g. ``7``, or LaTeX) above the library code that implements it.

    ``note``: a sentence in Markdown between the equation and the code (how the code reads the equation).
    ``fold``: sources longer than this many lines are folded (:func:`source_markdown`)."""
    _display_markdown(equation_markdown(equations, *objs, docstring=docstring, note=note, fold=fold))


def plain(value: Any) -> Any:
    """``value`` as a plain Python scalar (numpy/torch scalars -> int/float/bool), so glue's text is a number."""
    if type(value) in (bool, int, float, str) or value is None:  # exact types: np.float64 subclasses float
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return plain(item())
        except (TypeError, ValueError):
            pass
    raise TypeError(f"plain: {type(value).__name__} is not a scalar")


def plain_numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{prefix + name: plain(value)}``: what :func:`glue_numbers` glues."""
    return {prefix + name: plain(v) for name, v in values.items()}


def direction(a: Any, b: Any, digits: int | None = None,
              words: tuple[str, str, str] = ("above", "below", "equal to")) -> str:
    """The word that puts ``a`` beside ``b`` in a sentence (``"above"``, ``"below"``, ``"equal to"``), so the prose
    changes when the numbers do; ``"not comparable with"`` when either is missing (None or NaN).

    ``digits``: compare the numbers as the prose prints them, rounded to this many decimals (``0.2251`` and
    ``0.2249`` are "equal to" each other at 3 decimals, where the reader sees 0.225 twice)."""
    a, b = plain(a), plain(b)
    if a is None or b is None or a != a or b != b:  # NaN != NaN
        return "not comparable with"
    if digits is not None:
        a, b = round(a, digits), round(b, digits)
    return words[0] if a > b else words[1] if a < b else words[2]


def glue_numbers(values: Mapping[str, Any], prefix: str = "") -> None:
    """Glue every ``values`` entry (not displayed) under ``prefix + name`` for ``{glue:text}`` in the prose.

    Values become plain Python scalars first (:func:`plain`: glue stores their text, which must read back as a
    number for a format such as ``:.3f``). Outside a kernel (tests, scripts) nothing is glued."""
    glued = plain_numbers(values, prefix)
    from IPython import get_ipython

    if get_ipython() is None:
        return
    from myst_nb import glue

    for name, v in glued.items():
        glue(name, v, display=False)


def glue_markdown(values: Mapping[str, str], prefix: str = "") -> None:
    """Glue every ``values`` entry (Markdown text, not displayed) under ``prefix + name`` for ``{glue:md}`` in the
    prose, which renders it as Markdown inline (``{glue:text}`` would show its ``**`` and backticks as typed, and
    in bold). Outside a kernel (tests, scripts) nothing is glued."""
    texts = {prefix + name: v for name, v in values.items()}
    for name, v in texts.items():
        if not isinstance(v, str):
            raise TypeError(f"glue_markdown: {name!r} is a {type(v).__name__}, expected Markdown text (str)")
    from IPython import get_ipython

    if get_ipython() is None:
        return
    from IPython.display import Markdown
    from myst_nb import glue

    for name, v in texts.items():
        glue(name, Markdown(v), display=False)
