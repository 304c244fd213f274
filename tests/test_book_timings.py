"""The book's time: each executed chapter records its wall time, `mscrs book` sums them up (book-time.json)."""
import json

import pytest

from mscrs_core.book import runner, timings
from mscrs_core.cli import main


def test_records_are_read_back_in_book_order_with_their_tracks(tmp_path):
    timings.record(tmp_path, "06_conversation_run", "default", 1000.0, 1000.0 + 3 * 60)
    timings.record(tmp_path, "03_recommendation_run", "default", 1000.0, 1000.0 + 90)
    timings.record(tmp_path, "01_data", "default", 900.0, 907.5)
    names = ["01_data", "02_semantic_graphs", "03_recommendation_run", "06_conversation_run"]
    book = timings.summary(tmp_path, names, 280.0, tracks=[["03_recommendation_run"], ["06_conversation_run"]])
    assert [(c["chapter"], c["seconds"], c["track"]) for c in book["chapters"]] == [
        ("01_data", 7.5, None), ("03_recommendation_run", 90.0, 1), ("06_conversation_run", 180.0, 2)]
    assert book["wall_seconds"] == 280.0 and set(book["machine"]) == {"processor", "cores", "bfloat16_native"}
    timings.write_summary(tmp_path, book)
    assert timings.load_summary(tmp_path) == book
    text = timings.format_summary(book, "default")
    assert "profile default" in text and ("bfloat16" in text or "float32" in text)
    assert "03_recommendation_run" in text and "1.5 min" in text and "track 1" in text
    assert "all chapters, wall clock" in text and "4.7 min" in text
    with pytest.raises(ValueError, match="ended .* before it started"):
        timings.record(tmp_path, "01_data", "default", 10.0, 5.0)


def test_a_broken_record_is_an_error_naming_its_file(tmp_path):
    timings.record_path(tmp_path, "01_data").write_text("{not json")
    with pytest.raises(ValueError, match=r"\.01_data\.time\.json: expected a chapter time"):
        timings.read(tmp_path, ["01_data"])
    timings.record_path(tmp_path, "01_data").write_text(json.dumps({"chapter": "01_data", "seconds": 3}))
    with pytest.raises(ValueError, match=r"\.01_data\.time\.json: .*missing started, ended"):
        timings.read(tmp_path, ["01_data"])
    with pytest.raises(ValueError, match="book-time.json"):
        timings.load_summary(tmp_path / "nowhere")


def test_an_executed_chapter_records_its_time_and_a_prepared_one_does_not(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.py").write_text('# %% tags=["parameters"]\nn = 3\n\n# %%\nprint(n * 2)\n')
    monkeypatch.setattr(runner, "notebooks_dir", lambda: src)
    runner.run_chapter("tiny", "smoke", out_dir=tmp_path / "prepared", prepare_only=True)
    assert not timings.record_path(tmp_path / "prepared", "tiny").exists()
    runner.run_chapter("tiny", "smoke", out_dir=tmp_path / "out", output_name="tiny-point")
    (entry,) = timings.read(tmp_path / "out", ["tiny-point"])
    assert entry["chapter"] == "tiny-point" and entry["profile"] == "smoke" and 0 < entry["seconds"] < 600
    assert entry["started"] <= entry["ended"] and entry["cpus"] >= 1


def test_mscrs_book_prints_and_writes_the_book_time(tmp_path, monkeypatch, capsys):
    clock = iter(range(0, 10_000, 30))

    def fake_run(name, profile, out_dir=None, prepare_only=False, **kw):
        start = float(next(clock))
        timings.record(out_dir, name, profile, start, start + 30.0)
        return runner.output_dir(profile, out_dir) / f"{name}.ipynb"

    monkeypatch.setattr(runner, "run_chapter", fake_run)
    assert main(["book", "--profile", "smoke", "--out", str(tmp_path), "--only", "01_data", "02_semantic_graphs"]) == 0
    printed = capsys.readouterr().out
    assert "book time, profile smoke" in printed and "01_data" in printed and "0.5 min" in printed
    book = json.loads((tmp_path / timings.SUMMARY_NAME).read_text())
    assert [c["chapter"] for c in book["chapters"]] == ["01_data", "02_semantic_graphs"]
    assert book["wall_seconds"] >= 0
    # --prepare-only (nbval's set-up) executes nothing and times nothing
    (tmp_path / timings.SUMMARY_NAME).unlink()
    assert main(["book", "--profile", "smoke", "--out", str(tmp_path), "--only", "01_data", "--prepare-only"]) == 0
    assert not (tmp_path / timings.SUMMARY_NAME).exists() and "book time" not in capsys.readouterr().out
