import json

import pytest

from mscrs_core.book import runner
from mscrs_core.cli import main


def test_profiles_name_existing_chapters():
    for c in runner.chapters():
        assert c.source.is_file(), c.source
        for prof in runner.PROFILES:
            runner.check_parameters(c.source, runner.profile_parameters(c.name, prof))


def test_unknown_parameter_is_rejected_with_its_name():
    src = runner.notebooks_dir() / "01_data.py"
    with pytest.raises(runner.ParameterError, match=r"01_data: unknown parameter 'dataset'.*datasets"):
        runner.check_parameters(src, {"dataset": "inspired"})


def test_wrong_type_is_rejected():
    src = runner.notebooks_dir() / "01_data.py"
    with pytest.raises(runner.ParameterError, match=r"'check_checksums' = 'yes' has type str, expected bool"):
        runner.check_parameters(src, {"check_checksums": "yes"})
    runner.check_parameters(src, {"datasets": ["inspired"], "data_root": "/x"})


def test_unknown_profile():
    with pytest.raises(runner.ParameterError, match="unknown profile"):
        runner.profile_parameters("01_data", "fast")


def test_prepare_only_injects_parameters_and_leaves_sources_alone(tmp_path):
    src = runner.notebooks_dir() / "01_data.py"
    before = src.read_bytes()
    out = runner.run_chapter("01_data", "smoke", out_dir=tmp_path, overrides={"datasets": ["inspired"]},
                             prepare_only=True)
    assert out == tmp_path / "01_data.ipynb" and src.read_bytes() == before
    nb = json.loads(out.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and 'datasets = ["inspired"]' in "".join(injected[0]["source"])
    assert not list(tmp_path.glob(".*partial*"))


def test_cli_reports_parameter_errors(capsys):
    assert main(["run", "01_data", "--profile", "smoke", "-p", "nope=1"]) == 2
    assert "unknown parameter 'nope'" in capsys.readouterr().err


def test_toc_lists_the_book_chapters():
    import yaml

    toc = yaml.safe_load((runner.notebooks_dir().parent / "_toc.yml").read_text())
    # parts: the chapters (executed notebooks), then the reference pages (book/*.md)
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    notebooks = [f for f in files if f.startswith("build/")]
    assert notebooks == [f"build/book/{c.name}" for c in runner.chapters(book_only=True)]
    assert all(f.startswith("book/") for f in files if f not in notebooks)
    assert {c.name for c in runner.chapters(book_only=True)} <= {c.name for c in runner.chapters()}


def test_executed_chapters_keep_their_figures_and_log_the_kernel_stderr(tmp_path, monkeypatch):
    """With MPLBACKEND=Agg (as make exports it) a chapter's figure still lands in the notebook."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "plot.py").write_text(
        '# %% tags=["parameters"]\nn = 3\n\n# %%\nimport matplotlib.pyplot as plt\n\nplt.plot(range(n))\n')
    monkeypatch.setattr(runner, "notebooks_dir", lambda: src)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    out = runner.run_chapter("plot", "smoke", out_dir=tmp_path / "out", overrides={"n": 4})
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert not any("IPKernelApp" in "".join(o.get("text", "")) for o in outputs)
    assert (tmp_path / "out" / ".plot.kernel.log").is_file()
