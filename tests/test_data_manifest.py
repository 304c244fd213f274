"""A data root's own manifest (issue 12, item 1): ``mscrs data manifest DIR`` writes it, ``mscrs data verify DIR``
checks it, every reader and every chapter checks the files against it, and the README's "Your own data" commands
build chapter 1 on another ReDial split."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mscrs_core.book import runner
from mscrs_core.cli import main
from mscrs_core.data import ChecksumError, DataError, load_inspired
from mscrs_core.data import files as data_files
from mscrs_core.data.files import DataFiles, manifest as packaged_manifest, project_root, resolve_data_root
from mscrs_core.data.manifest import (ROOT_MANIFEST, compute_entries, data_digest, read_manifest, use_data_root,
                                      verify_root, write_manifest)

REAL = resolve_data_root()


def writable_copy(src: Path, dst: Path) -> Path:
    """``src`` copied to ``dst`` with writable modes (the shared data is read-only)."""
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def edit_same_size(p: Path) -> None:
    """Change one byte of ``p`` (same size) and move its mtime on, as a later hand edit would."""
    data = bytearray(p.read_bytes())
    data[10] = ord("X") if data[10] != ord("X") else ord("Y")
    st = p.stat()
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "data"
    writable_copy(REAL / "inspired", r / "inspired")
    return r


@pytest.fixture(autouse=True)
def _checks_back_on():
    yield
    data_files.set_default_check(True)  # a test that turns the checks off leaves the process as it found it


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mscrs: error: "), err
    return err


def test_manifest_round_trip(root, capsys):
    assert main(["data", "manifest", str(root)]) == 0
    path = root / ROOT_MANIFEST
    assert f"wrote {path}" in capsys.readouterr().out
    text = path.read_text()
    assert text.splitlines()[0] == "path\tbytes\tsha256"  # the packaged manifest's columns
    entries = read_manifest(path)
    assert entries == compute_entries(root) and len(entries) == 8
    shipped = packaged_manifest()
    assert all(entries[rel] == shipped[rel] for rel in entries)  # a byte-for-byte copy: the shipped sums
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # readable beside the data, not a private temp file
    assert main(["data", "verify", str(root)]) == 0
    assert f"8 file(s) match {path}" in capsys.readouterr().out
    report = verify_root(root)
    assert report.files == 8 and not report.shipped
    assert load_inspired(root).num_items == 1472


def test_changed_file_is_named(root, capsys):
    write_manifest(root)
    target = root / "inspired" / "test_data_dbpedia.jsonl"
    edit_same_size(target)
    assert main(["data", "verify", str(root)]) == 2
    err = one_error_line(capsys)
    assert str(target) in err and "sha256" in err and f"mscrs data manifest {root}" in err
    with pytest.raises(ChecksumError, match=r"test_data_dbpedia\.jsonl.*sha256.*MANIFEST\.sha256\.tsv"):
        load_inspired(root)
    with open(root / "inspired" / "relation2id.json", "a") as f:  # another size: named by the size check
        f.write(" ")
    with pytest.raises(ChecksumError, match=r"relation2id\.json: expected 578 bytes"):
        DataFiles(root).json("inspired/relation2id.json")


def test_missing_and_unlisted_files(root, capsys):
    write_manifest(root)
    (root / "inspired" / ".notes.swp").write_text("an editor's file: hidden files are not data")
    assert main(["data", "verify", str(root)]) == 0
    capsys.readouterr()
    (root / "inspired" / "extra.json").write_text("{}")
    assert main(["data", "verify", str(root)]) == 2
    err = one_error_line(capsys)
    assert "inspired/extra.json: not listed in" in err
    with pytest.raises(ChecksumError, match=r"extra\.json: not listed in .*MANIFEST\.sha256\.tsv"):
        DataFiles(root).json("inspired/extra.json")  # a reader refuses a file its root's manifest does not list
    (root / "inspired" / "extra.json").unlink()
    (root / "inspired" / "item_ids.json").unlink()
    assert main(["data", "verify", str(root)]) == 2
    assert "item_ids.json: missing" in one_error_line(capsys)


def test_regenerated_manifest_accepts_the_change(root):
    write_manifest(root)
    before = data_digest("inspired", root)
    valid = root / "inspired" / "valid_data_dbpedia.jsonl"
    valid.write_text("".join(valid.read_text().splitlines(keepends=True)[:-1]))  # one dialog fewer
    with pytest.raises(ChecksumError, match="valid_data_dbpedia"):
        data_digest("inspired", root)  # the run's fingerprint checks the data first, as a reader would
    write_manifest(root)
    assert verify_root(root).files == 8
    assert data_digest("inspired", root) != before
    assert len(load_inspired(root).dialogs("valid")) == 98


def test_a_root_without_manifest_is_the_shipped_data_or_says_what_to_do(root, capsys):
    report = use_data_root(REAL, True, datasets=["inspired", "redial"])
    assert report.shipped and report.files == 19 and set(report.digests) == {"inspired", "redial"}
    assert "the packaged manifest (shipped data)" in str(report)
    assert use_data_root(root, True).shipped  # an unmodified copy is the shipped data
    edit_same_size(root / "inspired" / "item_ids.json")
    with pytest.raises(ChecksumError, match=rf"item_ids\.json.*has no manifest of its own.*mscrs data manifest {root}"):
        use_data_root(root, True, datasets=["inspired"])
    assert main(["data", "verify", str(root)]) == 2
    assert f"`mscrs data manifest {root}`" in one_error_line(capsys)


def test_check_checksums_false_reads_changed_data(root):
    test = root / "inspired" / "test_data_dbpedia.jsonl"
    test.write_text("".join(test.read_text().splitlines(keepends=True)[:-1]))  # one dialog fewer
    with pytest.raises(ChecksumError):
        load_inspired(root)
    report = use_data_root(root, False, datasets=["inspired"])
    assert "not checked" in str(report) and not report.shipped
    load_inspired(root)  # the chapter's setting applies to every reader it calls
    data_files.set_default_check(True)
    with pytest.raises(ChecksumError):
        load_inspired(root)


@pytest.mark.parametrize("text, message", [
    ("", r":1: expected the header line"),
    ("path\tbytes\tsha256\ninspired/a.json\t12\n", r":2: expected path<TAB>bytes<TAB>sha256"),
    ("path\tbytes\tsha256\n../a.json\t12\t" + "0" * 64 + "\n", r":2: path '\.\./a\.json' is not a plain relative"),
    ("path\tbytes\tsha256\n/etc/passwd\t12\t" + "0" * 64 + "\n", r":2: path '/etc/passwd'"),
    ("path\tbytes\tsha256\na.json\t-1\t" + "0" * 64 + "\n", r":2: bytes '-1' is not a non-negative integer"),
    ("path\tbytes\tsha256\na.json\t1\tABC\n", r":2: sha256 'ABC' is not 64 lower-case hex digits"),
    ("path\tbytes\tsha256\na.json\t1\t" + "0" * 64 + "\na.json\t1\t" + "0" * 64 + "\n", r":3: a\.json is listed twice"),
])
def test_malformed_manifest_names_the_line(tmp_path, text, message):
    p = tmp_path / ROOT_MANIFEST
    p.write_text(text)
    with pytest.raises(DataError, match=message):
        read_manifest(p)


def test_manifest_refuses_read_only_and_empty_folders(tmp_path, capsys):
    assert main(["data", "manifest", str(tmp_path)]) == 2
    assert "no data files" in one_error_line(capsys)
    ro = tmp_path / "ro"
    (ro / "inspired").mkdir(parents=True)
    (ro / "inspired" / "item_ids.json").write_text("[1]")
    ro.chmod(0o555)
    try:
        assert main(["data", "manifest", str(ro)]) == 2
        assert "read-only" in one_error_line(capsys)
        assert not (ro / ROOT_MANIFEST).exists()
    finally:
        ro.chmod(0o755)
    assert main(["data", "verify", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in one_error_line(capsys)


def test_every_chapter_that_reads_data_takes_data_root_and_check_checksums():
    for chapter in runner.chapters():
        declared = runner.declared_parameters(chapter.source)
        assert declared.get("data_root", "absent") is None, chapter.name
        assert declared.get("check_checksums") is True, chapter.name
        assert "use_data_root(data_root, check_checksums" in chapter.source.read_text(), chapter.name
        runner.check_parameters(chapter.source, {"check_checksums": False, "data_root": "/some/where"})


# -- the README's "Your own data" section, followed literally ------------------------------------------------
def readme_commands() -> list[str]:
    text = (project_root() / "README.md").read_text()
    section = text.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README 'Your own data' has no bash block"
    return block.group(1).strip().splitlines()


def test_readme_your_own_data_builds_chapter_1_with_the_new_counts(tmp_path):
    probe = subprocess.run([str(project_root() / ".venv/bin/mscrs"), "data", "import", "--help"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("`mscrs data import` is not wired into the CLI yet")
    lines = readme_commands()
    assert any(line.startswith('MSCRS_DATA="$DST"') and "make book" in line for line in lines)
    # the official release's files, with the train split replaced by another one (the shipped valid split)
    src = tmp_path / "redial-release"
    (src / "kg").mkdir(parents=True)
    shutil.copyfile(REAL / "redial" / "valid_data.jsonl", src / "train_data.jsonl")
    for name in ("test_data.jsonl", "movies_with_mentions.csv", "movie_metadata.json"):
        shutil.copyfile(REAL / "redial" / name, src / name)
    for p in (REAL / "redial" / "kg").iterdir():
        shutil.copyfile(p, src / "kg" / p.name)
    dst = tmp_path / "mscrs-data" / "redial-full"
    out = tmp_path / "book"
    script = []
    for line in lines:
        if line.startswith("SRC="):
            line = f"SRC={src}"
        elif line.startswith("DST="):
            line = f"DST={dst}"
        elif "make book" in line:
            continue  # the whole book is not a unit test; chapter 1 is
        script.append(line.replace("--out build/redial-full", f"--out {out}"))
    env = {k: v for k, v in os.environ.items() if k not in ("MSCRS_DATA", "MSCRS_RESULTS_DIR")}
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=project_root(), env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"match {dst / ROOT_MANIFEST}" in res.stdout
    from mscrs_core.data import load_redial

    ds = load_redial(dst)
    counts = tuple(len(ds.dialogs(s)) for s in ("train", "valid", "test"))
    assert counts[0] + counts[1] == 901 and counts[2] == 1342 and counts[0] != 1369
    import nbformat

    nb = nbformat.read(out / "01_data.ipynb", as_version=4)
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"data root {dst}" in text and str(dst / ROOT_MANIFEST) in text
    assert re.search(rf"train\s+{counts[0]}\s", text) and re.search(rf"valid\s+{counts[1]}\s", text), text[:3000]
