"""Bad input: each case gives an error naming the file (and line), or a counted skip."""
import json
import shutil
from pathlib import Path

import pytest

from mscrs_core.data import ChecksumError, DataError, load_inspired, load_redial
from mscrs_core.data.files import DataFiles, resolve_data_root

REAL = resolve_data_root()


def copy_inspired(tmp_path: Path) -> Path:
    shutil.copytree(REAL / "inspired", tmp_path / "inspired")
    return tmp_path


def write_lines(p: Path, lines: list[str]) -> None:
    p.write_text("\n".join(lines) + "\n")


TURN = {"text": "hi", "role": "SEEKER", "entity_link": [], "movie_link": []}


def test_missing_data_root_says_how_to_get_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MSCRS_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="redialdata.github.io"):
        resolve_data_root()


def test_missing_file_names_it(tmp_path):
    root = copy_inspired(tmp_path)
    (root / "inspired" / "item_ids.json").unlink()
    with pytest.raises(DataError, match=r"item_ids\.json"):
        load_inspired(root, check=False)


def test_checksum_mismatch_names_the_file(tmp_path):
    root = copy_inspired(tmp_path)
    p = root / "inspired" / "test_data_dbpedia.jsonl"
    data = bytearray(p.read_bytes())
    data[10] = ord("X") if data[10] != ord("X") else ord("Y")  # same size, other content
    p.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"test_data_dbpedia\.jsonl.*sha256"):
        load_inspired(root)


def test_checksum_size_mismatch(tmp_path):
    root = copy_inspired(tmp_path)
    with open(root / "inspired" / "relation2id.json", "a") as f:
        f.write(" ")
    with pytest.raises(ChecksumError, match=r"relation2id\.json.*bytes"):
        DataFiles(root).json("inspired/relation2id.json")


def test_malformed_json_line_names_file_and_line(tmp_path):
    root = copy_inspired(tmp_path)
    write_lines(root / "inspired" / "valid_data_dbpedia.jsonl", [json.dumps([TURN]), '[{"text": "hi", ', json.dumps([TURN])])
    with pytest.raises(DataError, match=r"valid_data_dbpedia\.jsonl:2: malformed JSON"):
        load_inspired(root, check=False)


def test_bad_role_names_line(tmp_path):
    root = copy_inspired(tmp_path)
    write_lines(root / "inspired" / "valid_data_dbpedia.jsonl", [json.dumps([TURN]), json.dumps([{**TURN, "role": "BOT"}])])
    with pytest.raises(DataError, match=r"valid_data_dbpedia\.jsonl:2: turn 0: role 'BOT'"):
        load_inspired(root, check=False)


def test_empty_dialog_is_a_counted_skip(tmp_path):
    root = copy_inspired(tmp_path)
    write_lines(root / "inspired" / "valid_data_dbpedia.jsonl", [json.dumps([TURN]), "[]", json.dumps([TURN])])
    ds = load_inspired(root, check=False)
    assert len(ds.dialogs("valid")) == 2
    assert ds.report["empty_dialogs_skipped"] == 1


def test_link_outside_vocabulary_is_a_counted_skip(tmp_path):
    root = copy_inspired(tmp_path)
    t = {**TURN, "entity_link": ["<http://dbpedia.org/resource/No_Such_Thing>"]}
    write_lines(root / "inspired" / "valid_data_dbpedia.jsonl", [json.dumps([t])])
    ds = load_inspired(root, check=False)
    assert ds.report["entity_links_outside_vocabulary"] == 1
    assert ds.dialogs("valid")[0].turns[0].entities == ()


def test_kg_id_outside_vocabulary_is_an_error(tmp_path):
    root = copy_inspired(tmp_path)
    (root / "inspired" / "dbpedia_subkg.json").write_text(json.dumps({"0": [[0, 99999]]}))
    with pytest.raises(DataError, match=r"dbpedia_subkg\.json.*99999 outside the entity vocabulary"):
        load_inspired(root, check=False)


def test_kg_relation_outside_vocabulary_is_an_error(tmp_path):
    root = copy_inspired(tmp_path)
    (root / "inspired" / "dbpedia_subkg.json").write_text(json.dumps({"0": [[40, 1]]}))
    with pytest.raises(DataError, match=r"relation id 40 outside 0\.\.12"):
        load_inspired(root, check=False)


def test_item_id_outside_vocabulary_is_an_error(tmp_path):
    root = copy_inspired(tmp_path)
    (root / "inspired" / "item_ids.json").write_text("[1, 2, 1000000]")
    with pytest.raises(DataError, match=r"item_ids\.json.*1000000"):
        load_inspired(root, check=False)


def copy_redial(tmp_path: Path) -> Path:
    (tmp_path / "redial").mkdir()
    shutil.copytree(REAL / "redial" / "kg", tmp_path / "redial" / "kg")
    shutil.copy(REAL / "redial" / "movies_with_mentions.csv", tmp_path / "redial")
    for s in ("train", "valid", "test"):
        with open(REAL / "redial" / f"{s}_data.jsonl") as f:
            first = [next(f) for _ in range(3)]
        (tmp_path / "redial" / f"{s}_data.jsonl").write_text("".join(first))
    return tmp_path


def test_redial_missing_field_and_empty_dialog(tmp_path):
    root = copy_redial(tmp_path)
    good = json.loads((root / "redial" / "valid_data.jsonl").read_text().splitlines()[0])
    lines = [json.dumps(good), json.dumps({**good, "messages": []})]
    write_lines(root / "redial" / "valid_data.jsonl", lines)
    ds = load_redial(root, check=False, link_entities=False)
    assert len(ds.dialogs("valid")) == 1 and ds.report["empty_dialogs_skipped"] == 1
    bad = dict(good)
    del bad["initiatorWorkerId"]
    write_lines(root / "redial" / "valid_data.jsonl", [json.dumps(good), json.dumps(good), json.dumps(bad)])
    with pytest.raises(DataError, match=r"valid_data\.jsonl:3: dialog lacks the field\(s\) \['initiatorWorkerId'\]"):
        load_redial(root, check=False, link_entities=False)


def test_redial_unknown_movie_is_counted(tmp_path):
    root = copy_redial(tmp_path)
    good = json.loads((root / "redial" / "valid_data.jsonl").read_text().splitlines()[0])
    good["messages"][0]["text"] = "have you seen @999999999 ?"
    write_lines(root / "redial" / "valid_data.jsonl", [json.dumps(good)])
    ds = load_redial(root, check=False, link_entities=False)
    assert ds.report["per_split"]["valid"]["movie_mentions_unlinked"] == 1
    assert ds.report["per_split"]["valid"]["movie_mentions_without_name"] == 1
