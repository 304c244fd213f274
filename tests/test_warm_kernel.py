"""A sweep worker's kept kernel: point after point in one kernel, each seeing none of the previous point's names,
with the numbers of a fresh kernel per point."""
import json
import re

import pytest

from mscrs_core.book import runner
from mscrs_core.book.warm_kernel import WarmKernel
from mscrs_core.experiments import sweep

PROBE = '''# %% tags=["parameters"]
x = 0
fail = False

# %%
import os
seen_before = "leftover" in globals()
leftover = x
print(f"pid={os.getpid()} before={seen_before} x={x}")
if fail:
    raise ValueError("the probe failed on purpose")
'''


@pytest.fixture
def probe_chapters(tmp_path, monkeypatch):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "probe.py").write_text(PROBE)
    monkeypatch.setattr(runner, "notebooks_dir", lambda: nbs)
    return tmp_path / "out"


def _probe(out, kernel, **params):
    target = runner.run_chapter("probe", "smoke", out_dir=out, output_name=f"probe-{params['x']}",
                                overrides=params, kernel=kernel)
    nb = json.loads(target.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    text = "".join("".join(o.get("text", "")) for c in code for o in c.get("outputs", []))
    pid, before, x = re.search(r"pid=(\d+) before=(\w+) x=(\d+)", text).groups()
    return int(pid), before == "True", int(x), [c["execution_count"] for c in code]


def test_a_kept_kernel_runs_chapter_after_chapter_each_with_an_empty_namespace(probe_chapters):
    with WarmKernel(probe_chapters) as kernel:
        first = _probe(probe_chapters, kernel, x=1)
        second = _probe(probe_chapters, kernel, x=2)
        assert first[0] == second[0]  # the same kernel process
        assert (first[1], second[1]) == (False, False)  # the first point's `leftover` is gone
        assert (first[2], second[2]) == (1, 2)
        assert first[3] == second[3] == list(range(1, len(first[3]) + 1))  # the record counts from 1 each time
        assert kernel.started == 1 and kernel.runs == 2
        kernel.retire_rss = 0  # any kernel is now too large: shut down after its point
        third = _probe(probe_chapters, kernel, x=3)
        assert third[0] == first[0] and kernel.manager is None
        fourth = _probe(probe_chapters, kernel, x=4)
        assert fourth[0] != first[0] and kernel.started == 2
    assert kernel.manager is None  # the context shut it down


def test_a_failed_chapter_shuts_the_kept_kernel_down(probe_chapters):
    with WarmKernel(probe_chapters) as kernel:
        pid = _probe(probe_chapters, kernel, x=1)[0]
        with pytest.raises(Exception, match="failed on purpose"):
            _probe(probe_chapters, kernel, x=2, fail=True)
        assert kernel.manager is None  # a kernel whose point failed is not trusted with the next one
        assert _probe(probe_chapters, kernel, x=3)[0] != pid


def test_kept_kernels_give_the_numbers_of_fresh_kernels(tmp_path, monkeypatch):
    """The same points, one kernel each and one kept kernel for all: every number of every result identical."""
    points = [{"model": "graph_scorer", "seed": s} for s in (0, 1)] + [{"model": "text_classifier", "seed": 0}]
    results = {}
    for mode, fresh in (("fresh", "1"), ("kept", "0")):
        monkeypatch.setenv("MSCRS_FRESH_KERNELS", fresh)
        runs = sweep.run_points(points, profile="smoke", results_dir=tmp_path / mode, log=lambda *_: None,
                                workers=1)
        results[mode] = {}
        for name in runs["name"]:
            r = json.loads((tmp_path / mode / name / "result.json").read_text())
            results[mode][name] = {k: v for k, v in r.items() if k not in ("seconds", "finished", "timings")}
    assert results["fresh"].keys() == results["kept"].keys()
    for name in results["fresh"]:
        assert results["fresh"][name]["test"] == results["kept"][name]["test"], name
        assert results["fresh"][name].get("history") == results["kept"][name].get("history"), name
        assert results["fresh"][name].get("test_per_sample") == results["kept"][name].get("test_per_sample"), name
        assert results["fresh"][name].get("valid") == results["kept"][name].get("valid"), name
    kernel_logs = sorted(p.name for p in (tmp_path / "kept" / "notebooks").glob(".kernel-*.log"))
    assert len(kernel_logs) == 1  # one kernel ran the three points
