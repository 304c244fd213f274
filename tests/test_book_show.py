"""The book's d2l-style helpers (mscrs_core.book.show), its equation table, its reference pages and chapter 2's tables."""
import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mscrs_core.book import graph_tables, reference, show
from mscrs_core.book.equations import EQUATIONS, resolve
from mscrs_core.graphs.lightgcn import LightGCN, normalize_adjacency

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "paper" / "mscrs-sigir25.txt"


# ---------------------------------------------------------------------------------------------- show


def test_source_is_the_library_source():
    src = show.source_of(normalize_adjacency)
    assert src.startswith("def normalize_adjacency(") and "gcn_norm" in src
    assert show.qualified_name(LightGCN.forward) == "mscrs_core.graphs.lightgcn.LightGCN.forward"
    method = show.source_of(LightGCN.average)
    assert method.startswith("def average(self")  # dedented out of its class
    ast.parse(method)


def test_source_without_docstring_stays_valid_code():
    with_doc = show.source_of(LightGCN.forward)
    without = show.source_of(LightGCN.forward, docstring=False)
    assert '"""AvgPool over the selected layers' in with_doc and '"""' not in without
    ast.parse(without)

    def only_doc():
        """Nothing else."""

    ast.parse(show.source_of(only_doc, docstring=False))
    assert "..." in show.source_of(only_doc, docstring=False)


def test_source_of_a_file_edited_since_import_is_refused(tmp_path, monkeypatch):
    import importlib

    (tmp_path / "edited_mod.py").write_text("def first():\n    return 1\n\n\ndef second():\n    return 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("edited_mod")
    assert show.source_of(mod.second).startswith("def second")
    (tmp_path / "edited_mod.py").write_text("# a line\n# another\n# and more\n\ndef first():\n    return 1\n")
    import linecache

    linecache.clearcache()
    with pytest.raises(RuntimeError, match="changed since it was imported"):
        show.source_of(mod.second)


def test_source_markdown_has_caption_location_and_fence():
    md = show.source_markdown(LightGCN.average)
    assert "`mscrs_core.graphs.lightgcn.LightGCN.average` (mscrs_core/graphs/lightgcn.py:" in md
    assert "```python\ndef average(self" in md and md.rstrip().endswith("```")


def test_long_sources_fold_behind_a_summary():
    from mscrs_core.graphs.knn import build_knn_graph

    md = show.source_markdown(build_knn_graph, fold=10)
    assert md.startswith("<details><summary><code>mscrs_core.graphs.knn.build_knn_graph</code>")
    assert "\n\n```python\n" in md and md.endswith("</details>")
    assert "<details>" not in show.source_markdown(LightGCN.average, fold=10)


def test_fence_outgrows_backticks_inside_the_code():
    def quoted():
        return "```"

    md = show.source_markdown(quoted)
    assert "````python" in md


def test_equation_markdown_numbers_the_paper_equation():
    md = show.equation_markdown([7, 8], LightGCN.average, note="the note")
    assert md.count("$$") == 4 and "\\tag{7}" in md and "\\tag{8}" in md
    assert EQUATIONS[7].latex in md and md.index("the note") < md.index("```python")
    assert show.equation_markdown("$x = y$").strip() == "$$\nx = y\n$$"
    # a multi-line equation (cases) in its own environment: Sphinx would wrap $$ ... \\ ... $$ in split
    cases = show.equation_markdown(10)
    assert cases.startswith("\\begin{equation*}") and "\\tag{10}\n\\end{equation*}" in cases
    with pytest.raises(KeyError, match="no Eq. \\(30\\)"):
        show.equation_markdown(30)
    with pytest.raises(TypeError):
        show.equation_markdown(True)
    with pytest.raises(TypeError, match="no source"):
        show.source_markdown(len)


def test_show_helpers_display_one_markdown_output(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    show.equation_with_code(6, LightGCN.average)
    show.show_source(LightGCN.average)
    assert [type(o).__name__ for o in shown] == ["Markdown", "Markdown"]
    assert "\\tag{6}" in shown[0].data and "def average" in shown[1].data


def test_glue_values_are_plain_numbers():
    values = {"a": np.int64(3), "b": torch.tensor(0.5), "c": np.float32(2.0), "d": "text", "e": np.float64(0.25)}
    out = show.plain_numbers(values, "x_")
    assert out == {"x_a": 3, "x_b": 0.5, "x_c": 2.0, "x_d": "text", "x_e": 0.25}
    assert type(out["x_a"]) is int and type(out["x_b"]) is float and type(out["x_e"]) is float  # repr: a number
    assert show.glue_numbers(values) is None  # outside a kernel: nothing to glue into
    with pytest.raises(TypeError, match="not a scalar"):
        show.plain(np.zeros(3))


# ---------------------------------------------------------------------------------------------- equations


def test_equations_are_the_papers_numbered_equations():
    assert sorted(EQUATIONS) == list(range(1, 30))
    if PAPER.is_file():  # the paper's text numbers an equation as \tag{n}, "\qquad (n)$$" or "(n)" on its own line
        text = PAPER.read_text()
        numbers = {int(n) for pattern in (r"\\tag\{(\d+)\}", r"\\q?quad\s*\((\d+)\)\s*\$\$", r"^\s*\((\d{1,2})\)\s*$")
                   for n in re.findall(pattern, text, re.M)}
        assert numbers == set(EQUATIONS)


@pytest.mark.parametrize("number", sorted(EQUATIONS))
def test_every_equation_names_code_that_exists(number):
    eq = EQUATIONS[number]
    assert eq.implemented_by, f"Eq. ({number}) names no code"
    for dotted in eq.implemented_by:
        try:
            obj = resolve(dotted)
        except (ImportError, AttributeError) as err:
            pytest.fail(f"Eq. ({number}): {dotted} does not exist ({err}); update mscrs_core/book/equations.py")
        assert not any(p.startswith("_") for p in dotted.split(".")), f"Eq. ({number}): {dotted} is private"
        assert getattr(obj, "__doc__", None), f"Eq. ({number}): {dotted} has no docstring for the API page"
    assert (ROOT / "notebooks" / f"{eq.chapter}.py").is_file()
    # a literal | would split the Markdown table row of book/equations.md
    assert "|" not in eq.latex


def _shown_equations(chapter: str) -> set[int]:
    """Equation numbers a chapter passes to equation_with_code (literal ints or lists of ints)."""
    tree = ast.parse((ROOT / "notebooks" / f"{chapter}.py").read_text())
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "equation_with_code" and node.args:
            value = ast.literal_eval(node.args[0])
            out |= {value} if isinstance(value, int) else set(value)
    return out


@pytest.mark.parametrize("chapter", sorted({eq.chapter for eq in EQUATIONS.values()}))
def test_chapters_show_their_equations(chapter):
    source = (ROOT / "notebooks" / f"{chapter}.py").read_text()
    if "equation_with_code" not in source:
        pytest.skip(f"{chapter} does not show equations beside code yet")
    expected = {n for n, eq in EQUATIONS.items() if eq.chapter == chapter}
    assert expected <= _shown_equations(chapter), f"{chapter} lacks Eq. {sorted(expected - _shown_equations(chapter))}"


# ---------------------------------------------------------------------------------------------- pages


@pytest.mark.parametrize("page", sorted(reference.PAGES))
def test_reference_pages_are_up_to_date(page):
    text = reference.PAGES[page]()
    assert (ROOT / "book" / page).read_text() == text, \
        f"book/{page} is out of date: python -m mscrs_core.book.reference --write"


def test_api_page_documents_every_public_module_and_the_toc_lists_the_pages():
    import yaml

    page = (ROOT / "book" / "api.md").read_text()
    documented = set(re.findall(r"^\.\. automodule:: (\S+)$", page, re.M))
    assert documented == set(reference.public_modules())
    assert {"mscrs_core.graphs.fusion", "mscrs_core.models.recommender", "mscrs_core.experiments.conversation",
            "mscrs_core.data.redial", "mscrs_core.baselines.popularity", "mscrs_core.evaluation.ranking"} <= documented
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert {"book/equations", "book/api", "book/data_formats"} <= set(files)
    assert all((ROOT / f"{f}.md").is_file() for f in files if f.startswith("book/"))


def test_api_page_groups_new_modules_under_other():
    page = reference.api_page(["mscrs_core.graphs.knn", "mscrs_core.newthing"])
    assert page.index("## Semantic graphs") < page.index(".. automodule:: mscrs_core.graphs.knn")
    assert page.index("## Other modules") < page.index(".. automodule:: mscrs_core.newthing")
    assert "## Training" not in page


def test_reference_check_reports_stale_pages(tmp_path, capsys):
    assert reference.main(["--check", "--book-dir", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert reference.main(["--write", "--book-dir", str(tmp_path)]) == 0
    assert reference.main(["--check", "--book-dir", str(tmp_path)]) == 0


# ---------------------------------------------------------------------------------------------- chapter 2 tables


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from mscrs_core.data.synthetic import make_synthetic
    from mscrs_core.graphs.assemble import GraphSettings, build_dataset_graphs

    ds = make_synthetic(seed=0)
    # keyed as the chapter keys its datasets (the authors' variant follows one of their two dataset classes)
    return {"inspired": build_dataset_graphs(ds, GraphSettings(k=3, cache_dir=str(tmp_path_factory.mktemp("f"))))}


def test_comention_neighbours_are_the_heaviest_edges(built):
    g = built["inspired"]
    ei, w = g.collab.edge_index, g.collab.edge_weight
    e = int(ei[0][torch.argmax(w)])  # an entity with an edge
    got = graph_tables.comention_neighbours(g, e, top=3)
    mine = sorted(((int(c), int(j)) for j, c in zip(ei[1][ei[0] == e], w[ei[0] == e])), reverse=True)
    assert [c for _, c in got] == [c for c, _ in mine[:3]]
    assert {name for name, _ in got} <= {g.dataset.name_of(j) for _, j in mine}
    assert graph_tables.comention_neighbours(g, e, top=0) == []


def test_chapter_two_tables(built):
    g = built["inspired"]
    feats = graph_tables.feature_summary(built)
    assert feats.loc["inspired", "items"] == g.dataset.num_items and 0 < feats.loc["inspired", "cosine p95"] <= 1
    th = graph_tables.comention_thresholds(built, (0, 1, 4))
    assert list(th["threshold"]) == [0, 1, 4]
    assert th["edges (undirected)"].is_monotonic_decreasing
    row = th[th["threshold"] == g.collab.threshold].iloc[0]
    assert row["edges (undirected)"] == g.collab.num_edges // 2
    first = g.dataset.name_of(g.dataset.item_ids[0])
    table = graph_tables.neighbour_table(built, {"inspired": [first, "No Such Film"]}, text_top=2)
    assert table.loc[("inspired", first), "text neighbours (cosine)"].count(";") == 1
    assert table.loc[("inspired", "No Such Film"), "text neighbours (cosine)"] == "(not an item)"
    variants = graph_tables.encoder_variants(built, dim=8)
    assert list(variants.index.get_level_values("variant")) == ["paper", "authors_code"]
    assert set(variants["E_final"]) == {(g.dataset.num_entities, 8)}
    switches = graph_tables.ablation_switches(built, dim=8)
    assert list(switches["graphs used"]) == ["kg, collab, text", "kg, text", "kg, collab", "kg"]
    assert isinstance(graph_tables.degrees(g.kg.edge_index, g.dataset.num_entities), np.ndarray)
    assert isinstance(feats, pd.DataFrame)
