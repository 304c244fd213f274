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


def test_tracks_are_consecutive_chapters_that_share_no_runs():
    groups = runner.tracks()
    order = [c.name for c in runner.chapters()]
    assert groups == [["03_recommendation_run", "04_recommendation", "05_ablations"],
                      ["06_conversation_run", "07_conversation"]]
    # chapter 8 reads runs of both tracks: it must come after them, never inside one
    assert all(order.index("08_talk") > order.index(n) for g in groups for n in g)


def test_bad_tracks_in_profiles_are_errors(monkeypatch):
    real = runner.load_profiles()
    for bad, match in (([["03_recommendation_run"], ["03_recommendation_run"]], "in two tracks"),
                       ([["nope"]], "unknown"),
                       ([["03_recommendation_run"], ["05_ablations"]], "consecutive")):
        monkeypatch.setattr(runner, "load_profiles", lambda bad=bad: {**real, "tracks": bad})
        with pytest.raises(runner.ParameterError, match=match):
            runner.tracks()


def test_book_runs_the_tracks_side_by_side_between_the_other_chapters(tmp_path, monkeypatch):
    """With parallel_tracks=2 the chapters before the tracks run alone, then both tracks at once (one call), then the
    rest; a selection keeps only its chapters of each track; parallel_tracks=1 runs everything in order."""
    events = []
    monkeypatch.setattr(runner, "run_chapter", lambda name, profile, **kw: events.append(name) or tmp_path / name)
    monkeypatch.setattr(runner, "_run_tracks", lambda groups, *a, **kw: events.append(groups))
    runner.run_book("smoke", out_dir=tmp_path, parallel_tracks=2)
    assert events == ["01_data", "02_semantic_graphs",
                      [["03_recommendation_run", "04_recommendation", "05_ablations"],
                       ["06_conversation_run", "07_conversation"]], "08_talk"]
    events.clear()
    runner.run_book("smoke", out_dir=tmp_path, parallel_tracks=2, only=["04_recommendation", "07_conversation"])
    assert events == [[["04_recommendation"], ["07_conversation"]]]
    events.clear()
    runner.run_book("smoke", out_dir=tmp_path, parallel_tracks=2, only=["03_recommendation_run", "04_recommendation"])
    assert events == ["03_recommendation_run", "04_recommendation"]  # one track: nothing to run beside it
    events.clear()
    runner.run_book("smoke", out_dir=tmp_path)
    assert events == [c.name for c in runner.chapters()]
    with pytest.raises(runner.ParameterError, match="parallel_tracks"):
        runner.run_book("smoke", out_dir=tmp_path, parallel_tracks=0)


def test_a_failed_track_is_named_with_its_log_after_the_others_finish(tmp_path, monkeypatch):
    """Each track is a `mscrs book --only` process with its share of the cores; a failure names the track and shows
    the end of its log, and the other track still ran to its end."""
    import subprocess
    import sys

    calls = []

    class FakeProc:
        def __init__(self, cmd, stdout, stderr, env, cwd):
            calls.append((cmd, {k: env[k] for k in ("MSCRS_CPUS", "MSCRS_WORKERS", "OMP_NUM_THREADS")}))
            self.failing = "06_conversation_run" in cmd
            stdout.write("chapter 6 raised ValueError: boom\n" if self.failing else "ok\n")
            self.returncode = 1 if self.failing else 0

        def poll(self):
            return self.returncode

    monkeypatch.setattr(subprocess, "Popen", FakeProc)
    monkeypatch.setenv("MSCRS_CPUS", "2")
    monkeypatch.setenv("MSCRS_WORKERS", "2")
    with pytest.raises(RuntimeError, match=r"(?s)track 06_conversation_run -> 07_conversation failed.*boom"):
        runner._run_tracks([["03_recommendation_run"], ["06_conversation_run", "07_conversation"]], "smoke",
                           tmp_path, True, log=lambda *_: None)
    assert [c[0][:3] for c in calls] == [[sys.executable, "-m", "mscrs_core.cli"]] * 2
    assert calls[0][0][-2:] == ["--only", "03_recommendation_run"] and "--book-only" in calls[0][0]
    assert all(env == {"MSCRS_CPUS": "1", "MSCRS_WORKERS": "1", "OMP_NUM_THREADS": "1"} for _, env in calls)
    assert (tmp_path / ".track-03_recommendation_run.log").read_text() == "ok\n"


def test_a_track_that_ends_hands_its_cores_to_the_one_still_running(tmp_path, monkeypatch):
    """The share file starts at each track's share; when the first track ends the other is given every core, and
    a process following the file (core_share.follow_share) raises its torch threads to it."""
    import subprocess

    import torch

    from mscrs_core import core_share

    seen = []

    class FakeProc:
        def __init__(self, cmd, stdout, stderr, env, cwd):
            self.short, self.env, self.polls = "03_recommendation_run" in cmd, env, 0
            self.returncode = None

        def poll(self):
            share = core_share.read_share(self.env[core_share.SHARE_ENV])
            seen.append((self.short, share))
            self.polls += 1
            if self.short or share == 2:
                self.returncode = 0
            return self.returncode

    monkeypatch.setattr(subprocess, "Popen", FakeProc)
    monkeypatch.setenv("MSCRS_CPUS", "2")
    monkeypatch.setenv("MSCRS_WORKERS", "2")
    monkeypatch.setattr("time.sleep", lambda s: None)
    logs = []
    runner._run_tracks([["03_recommendation_run"], ["06_conversation_run", "07_conversation"]], "smoke",
                       tmp_path, True, log=logs.append)
    assert seen[:2] == [(True, 1), (False, 1)] and seen[-1] == (False, 2)
    assert any("1 track left: 2 cores each" in m for m in logs)
    assert not (tmp_path / ".core-share").exists()  # removed at the end

    share = tmp_path / "share"
    monkeypatch.setenv(core_share.SHARE_ENV, str(share))
    monkeypatch.setenv("MSCRS_WORKERS", "1")
    before = torch.get_num_threads()
    try:
        assert core_share.follow_share() is None  # no file yet: nothing changes
        core_share.write_share(share, 1)
        assert core_share.follow_share() == 1 and torch.get_num_threads() == 1
        assert core_share.follow_share() is None  # unchanged file: one stat, nothing else
        import os
        core_share.write_share(share, 2)
        os.utime(share, ns=(1, 10**18))  # a new stamp even within the file system's time resolution
        assert core_share.follow_share() == 2 and torch.get_num_threads() == 2
        share.write_text("many\n")
        os.utime(share, ns=(1, 2 * 10**18))
        assert core_share.follow_share() is None and torch.get_num_threads() == 2  # unreadable: left as it is
        with pytest.raises(ValueError):
            core_share.write_share(share, 0)
    finally:
        torch.set_num_threads(before)


def test_kernels_get_the_malloc_tunables_unless_the_caller_set_their_own(monkeypatch):
    from mscrs_core.book.runner import KERNEL_MALLOC_TUNABLES, kernel_environment

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    env = kernel_environment()
    assert env["GLIBC_TUNABLES"] == KERNEL_MALLOC_TUNABLES
    assert "glibc.malloc.mmap_max=0" in KERNEL_MALLOC_TUNABLES.split(":")
    assert env["MPLBACKEND"].startswith("module://")  # figures into the notebook, whatever make exported
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert kernel_environment()["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
