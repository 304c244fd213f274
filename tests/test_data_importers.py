"""Issue 12, item 2: `mscrs data import FORMAT SRC DST` for the official ReDial release, the original INSPIRED
TSV release and the generic dialog JSON Lines. Every test writes its own tiny files (never the shared data):
end-to-end imports read back with the project's readers and turned into samples, a table of malformed inputs
(each a one-line DataError naming the file and line, nothing left in DST), and property-based tests."""
from __future__ import annotations

import json
import random
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mscrs_core.cli import main
from mscrs_core.data import DataError, InvalidParameter, load_inspired, load_redial
from mscrs_core.data.importers import FORMATS, import_data, import_inspired_tsv, import_jsonl, import_redial
from mscrs_core.data.importers.common import MovieIndex, carve_valid, valid_rule
from mscrs_core.data.importers.jsonl import GenericDialog, parse_dialog
from mscrs_core.data.manifest import verify_root
from mscrs_core.data.samples import conversation_samples, pretrain_samples, rec_samples

R = "<http://dbpedia.org/resource/"
O = "<http://dbpedia.org/ontology/"


def jl(*objs) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


def put(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return root


def listing(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- tiny ReDial release + KGSF-style graph -------------------------------------------------------------------
REDIAL_ENT = {f"{R}Tom_Hanks>": 0, f"{R}B_(film)>": 1, f"{R}Horror_film>": 2, f"{R}C_(2001_film)>": 3, "222": 4}


def rd(cid, *msgs, mentions=None, **over) -> dict:
    d = {"conversationId": cid, "initiatorWorkerId": 1, "respondentWorkerId": 2,
         "movieMentions": mentions if mentions is not None else {"111": "B (2000)", "333": "C (2001)"},
         "messages": [{"senderWorkerId": w, "text": t, "messageId": i} for i, (w, t) in enumerate(msgs)],
         "respondentQuestions": {}, "initiatorQuestions": {}}
    d.update(over)
    return d


def redial_dialog(cid) -> dict:
    return rd(cid, (1, "hi, any horror like @111?"), (1, "Tom Hanks is great"), (2, "try @333"),
              (2, "or @222"), (1, "thanks"))


def redial_files(n_train: int = 8, valid: bool = False) -> dict[str, str]:
    files = {
        "train_data.jsonl": jl(*(redial_dialog(str(i)) for i in range(1, n_train + 1))),
        "test_data.jsonl": jl(redial_dialog("91"), redial_dialog("92")),
        "movies_with_mentions.csv": "movieId,movieName,nbMentions\n111,B  (2000),3\n222,Dee (1990),1\n"
                                    "333,C (2001),2\n",
        "kg/entity2id.json": json.dumps(REDIAL_ENT, indent=1),
        "kg/movie2entity.json": json.dumps({"111": f"{R}B_(film)>", "222": None, "333": f"{R}C_(2001_film)>"}),
        "kg/movie_entity_ids.json": "[1, 3, 4]",
        "kg/dbpedia_subkg.json": json.dumps({"1": [[0, 0], [1, 2]], "3": [[0, 0]]}, indent=1),
    }
    if valid:
        files["valid_data.jsonl"] = jl(redial_dialog("81"))
    return files


# -- tiny INSPIRED release (TSV) + UniCRS-style graph ------------------------------------------------------------
HEADER = ("dialog_id\tutt_id\tspeaker\tturn_id\ttext\ttext_with_placeholder\tmovies\tgenres\tpeople_names\t"
          "movie_dict\tgenre_dict\tactor_dict\tdirector_dict\tothers_dict\texpert_label\tsecond_label\t"
          "fine_label\tcoarse_label\tmovie_id")
INSPIRED_ENT = {f"{R}Full_Metal_Jacket>": 0, f"{R}Joker_(2019_film)>": 1, f"{R}Joker_(1966_film)>": 2,
                f"{R}Joker_(character)>": 3, f"{R}Stanley_Kubrick>": 4, f"{R}Tom_Hanks>": 5, f"{R}Drama_film>": 6,
                f"{R}Horror_fiction>": 7, f"{R}Toy_Story>": 8}
INSPIRED_KG = {
    "kg/entity2id.json": json.dumps(INSPIRED_ENT, indent=1),
    "kg/relation2id.json": json.dumps({f"{O}starring>": 0, f"{O}director>": 1, f"{O}genre>": 2}),
    "kg/dbpedia_subkg.json": json.dumps({"0": [[1, 4], [2, 6]], "1": [[2, 6]], "8": [[0, 5]], "3": [[0, 5]]}),
}


def row(did, utt, spk, text, movies="", genres="", people="", movie_dict="{}", actor_dict="{}", turn=None) -> str:
    f = [did, str(utt), spk, str(turn if turn is not None else (utt + 1) // 2), text, text, movies, genres, people,
         movie_dict, "{}", actor_dict, "{}", "", "", "", "", "", "x"]
    return "\t".join(f)


def tsv(*rows: str) -> str:
    return HEADER + "\n" + "".join(r + "\n" for r in rows)


def inspired_dialog(did: str, movie: str = "Full Metal Jacket (1987)") -> list[str]:
    md = repr({movie: 0})
    return [row(did, 1, "RECOMMENDER", "Hi! What do you like?", movie_dict=md),
            row(did, 2, "SEEKER", "I like drama and QUOTATION_MARKhorrorQUOTATION_MARK", genres="drama;  horror",
                movie_dict=md),
            row(did, 3, "SEEKER", "Kubrick maybe, or Tom Hanks", people="Stanley Kubrick; Tom Hanks",
                movie_dict=md, actor_dict="{'Tom Hanks': 0}"),
            row(did, 4, "RECOMMENDER", f"Try {movie.rsplit(' (', 1)[0]}", movies=movie, movie_dict=md),
            row(did, 5, "SEEKER", "Thanks", movie_dict=md)]


def inspired_files(n_train: int = 6) -> dict[str, str]:
    movies = ["Full Metal Jacket (1987)", "Joker (2019)", "Nope Movie (1999)"]
    train = [r for i in range(n_train) for r in inspired_dialog(f"d{i}", movies[i % 3])]
    return {"train.tsv": tsv(*train),
            "test.tsv": tsv(*inspired_dialog("t1", "Joker (2019)"), *inspired_dialog("t2")),
            **INSPIRED_KG}


# -- tiny generic JSON Lines -------------------------------------------------------------------------------------
def gd(did, *turns, **over) -> dict:
    d = {"dialog_id": did, "turns": list(turns) or [
        {"role": "seeker", "text": "any Kubrick?", "entities": [f"{R}Stanley_Kubrick>"]},
        {"role": "RECOMMENDER", "text": "Full Metal Jacket", "items": [0], "entities": [6]}]}
    d.update(over)
    return d


def jsonl_files() -> dict[str, str]:
    return {"train.jsonl": jl(*(gd(f"g{i}") for i in range(5))), "test.jsonl": jl(gd("t1"), gd(7)),
            **{k.replace("kg/", ""): v for k, v in INSPIRED_KG.items()}}


# =============================================================================================================
# end to end
# =============================================================================================================
def test_redial_import_reads_back_with_the_reader_and_builds_samples(tmp_path, capsys):
    src = put(tmp_path / "src", redial_files())
    dst = tmp_path / "root"
    assert main(["data", "import", "redial", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "imported redial -> redial/" in out and "valid:" in out and "sha256('mscrs-valid:0:" in out
    assert sorted(listing(dst)) == [
        "MANIFEST.sha256.tsv", "import_report_redial.json", "redial/kg/dbpedia_subkg.json", "redial/kg/entity2id.json",
        "redial/kg/movie2entity.json", "redial/kg/movie_entity_ids.json", "redial/movies_with_mentions.csv",
        "redial/test_data.jsonl", "redial/train_data.jsonl", "redial/valid_data.jsonl"]
    verify_root(dst)  # the root manifest covers every file
    ds = load_redial(dst)  # checked against DST's own manifest
    n = {s: len(ds.splits[s]) for s in ("train", "valid", "test")}
    assert n["train"] + n["valid"] == 8 and n["valid"] >= 1 and n["test"] == 2
    d = ds.splits["test"][0]
    assert [t.role for t in d.turns] == ["seeker", "recommender", "seeker"]  # consecutive messages merged
    assert d.turns[0].text == "hi, any horror like B (2000)? Tom Hanks is great"
    assert d.turns[1].items == (3, 4)  # @333 -> C_(2001_film); @222 -> KGSF's own entity "222"
    assert 0 in d.turns[0].entities and 2 in d.turns[0].entities  # Tom Hanks, horror (the project's linker)
    assert rec_samples(ds.splits["train"], ds.item_ids) and conversation_samples(ds.splits["train"], ds)
    assert pretrain_samples(ds.splits["train"])
    report = json.loads((dst / "import_report_redial.json").read_text())
    assert report["splits"]["valid"]["source"] == "train_data.jsonl (carved)"
    assert report["linked"][0] == {"what": "movie mentions -> items", "linked": 30, "total": 30,
                                   "how": "@movieId through kg/movie2entity.json (the reader's rule)"}
    assert str(tmp_path) not in json.dumps(report)  # no absolute path: same input, same bytes


def test_redial_given_valid_split_is_kept_and_drops_are_reported(tmp_path):
    files = redial_files(3, valid=True)
    files["train_data.jsonl"] += jl(rd("50", mentions={}), rd("51", (1, "seen @999?"), (2, "no")))
    src = put(tmp_path / "src", files)
    rep = import_redial(src, tmp_path / "root")
    ds = load_redial(tmp_path / "root")
    assert [len(ds.splits[s]) for s in ("train", "valid", "test")] == [4, 1, 2]
    dropped = {(d["what"], d["reason"].split(" (")[0]): d for d in rep.to_json()["dropped"]}
    assert dropped["dialogs", "no messages"]["examples"] == ["train_data.jsonl:4 (conversationId 50)"]
    assert dropped["movie mentions (item link)", "movie id has no entity in kg/movie2entity.json"]["count"] == 1
    assert dropped["movie mentions (name)", "movie id in neither movieMentions nor movies_with_mentions.csv"][
        "examples"] == ["train_data.jsonl:5: @999"]
    assert not any("carved" in s["source"] for s in rep.splits.values())


def test_redial_import_of_the_same_files_is_byte_identical(tmp_path):
    src = put(tmp_path / "src", redial_files())
    import_redial(src, tmp_path / "a")
    import_redial(src, tmp_path / "b", kg=src / "kg")
    assert listing(tmp_path / "a") == listing(tmp_path / "b")


def test_inspired_tsv_import_links_movies_genres_people(tmp_path, capsys):
    files = inspired_files()
    # the official release has rows whose movie_dict is not a literal (a missing quote): ignored and reported
    files["test.tsv"] = files["test.tsv"].replace("{'Joker (2019)': 0}", "{'Joker (2019): 0}", 1)
    src = put(tmp_path / "src", files)
    dst = tmp_path / "root"
    assert main(["data", "import", "inspired-tsv", str(src), str(dst), "--kg", str(src / "kg")]) == 0
    printed = capsys.readouterr().out
    assert "linked movie names: 6 / 8" in printed and "dropped 1 movie_dict values" in printed
    ds = load_inspired(dst)
    assert [len(ds.splits[s]) for s in ("train", "valid", "test")] == [5, 1, 2]
    d = ds.splits["test"][0]  # t1: Joker (2019)
    assert [t.role for t in d.turns] == ["recommender", "seeker", "recommender", "seeker"]
    assert d.turns[1].text == 'I like drama and "horror" Kubrick maybe, or Tom Hanks'
    assert d.turns[1].entities[:4] == (6, 7, 4, 5)  # drama -> Drama_film, horror -> Horror_fiction, people
    assert d.turns[2].items == (1,)  # Joker (2019) -> Joker_(2019_film), not 1966, not the character
    assert ds.item_ids == [0, 1]
    assert ds.splits["test"][1].turns[2].items == (0,)
    report = json.loads((dst / "import_report_inspired.json").read_text())
    dropped = {d["what"]: d for d in report["dropped"]}
    assert dropped["movie names"] == {"what": "movie names", "reason": "no film of this title (and year) in the graph",
                                      "count": 2, "examples": ["train.tsv:15: 'Nope Movie (1999)'",
                                                               "train.tsv:30: 'Nope Movie (1999)'"]}
    assert dropped["movie_dict values"]["examples"][0].startswith("test.tsv:2: ")
    ids = (dst / "inspired" / "dialog_ids.tsv").read_text().splitlines()
    assert ids[0] == "split\tline\tsource_dialog_id" and "test\t1\tt1" in ids
    assert rec_samples(ds.splits["train"], ds.item_ids) and pretrain_samples(ds.splits["train"])
    assert conversation_samples(ds.splits["test"], ds)[1].response == "Try <movie>"


def test_inspired_tsv_without_text_linking_and_with_a_kgsf_graph(tmp_path):
    files = inspired_files()
    kg = {k: v for k, v in files.items() if k.startswith("kg/") and "relation2id" not in k}
    src = put(tmp_path / "src", {k: v for k, v in files.items() if not k.startswith("kg/")})
    put(tmp_path, {k.replace("kg/", "kgsf/"): v for k, v in kg.items()})
    rep = import_inspired_tsv(src, tmp_path / "root", kg=tmp_path / "kgsf", link_text=False)
    ds = load_inspired(tmp_path / "root")
    assert ds.kg.relation_names == ["relation 0", "relation 1", "relation 2"]  # written when the graph has none
    assert "entities found in the text" not in rep.linked


def test_jsonl_import_round_trip_and_report(tmp_path):
    files = jsonl_files()
    files["train.jsonl"] += jl(gd("g9", {"role": "seeker", "text": "x", "items": [99, "nope"], "entitys": [1]}),
                               gd("g10", turns=[]))
    src = put(tmp_path / "src", files)
    rep = import_jsonl(src, tmp_path / "root")
    ds = load_inspired(tmp_path / "root")
    assert sum(len(ds.splits[s]) for s in ("train", "valid")) == 6 and len(ds.splits["test"]) == 2
    t = ds.splits["test"][1].turns
    assert t[0].entities == (4,) and t[1].items == (0,) and t[1].entities == (6,)
    assert ds.item_ids == [0]
    j = rep.to_json()
    dropped = {(d["what"], d["reason"]): d["examples"] for d in j["dropped"]}
    assert dropped["item ids", "entity id outside the graph (0..8)"] == ["train.jsonl:6 turn 0: 99"]
    assert dropped["item ids", "not a key of entity2id.json"] == ["train.jsonl:6 turn 0: 'nope'"]
    assert dropped["dialogs", "no turns"] == ["train.jsonl:7 (dialog_id g10)"]
    assert any("turn.entitys (1 dialogs)" in n for n in j["notes"])


def test_jsonl_item_outside_the_catalogue_is_kept_as_an_entity(tmp_path):
    files = jsonl_files()
    files["item_ids.json"] = "[0, 8]"
    files["test.jsonl"] = jl(gd("t1", {"role": "recommender", "text": "Joker", "items": [1, 8]}))
    src = put(tmp_path / "src", files)
    rep = import_jsonl(src, tmp_path / "root")
    ds = load_inspired(tmp_path / "root")
    assert ds.item_ids == [0, 8]
    assert ds.splits["test"][0].turns[0].items == (8,) and ds.splits["test"][0].turns[0].entities == (1,)
    assert rep.to_json()["dropped"][0]["what"] == "item ids (as items)"


def test_force_replaces_one_dataset_and_keeps_the_other(tmp_path):
    dst = tmp_path / "root"
    import_redial(put(tmp_path / "r", redial_files()), dst)
    before = listing(dst / "redial")
    with pytest.raises(DataError, match="destination folder is not empty; .*--force"):
        import_jsonl(put(tmp_path / "j", jsonl_files()), dst)
    import_jsonl(tmp_path / "j", dst, force=True)
    assert listing(dst / "redial") == before
    verify_root(dst)
    assert load_redial(dst) and load_inspired(dst)
    import_jsonl(tmp_path / "j", dst, force=True, seed=3)  # again: the old inspired/ is replaced, nothing left over
    assert sorted(p.name for p in dst.iterdir()) == ["MANIFEST.sha256.tsv", "import_report_inspired.json",
                                                      "import_report_redial.json", "inspired", "redial"]
    verify_root(dst)


def test_a_failed_import_leaves_dst_as_it_was(tmp_path):
    dst = tmp_path / "root"
    import_jsonl(put(tmp_path / "j", jsonl_files()), dst)
    before = listing(dst)
    put(tmp_path / "j", {"test.jsonl": jl(gd("t1")) + "{broken\n"})
    with pytest.raises(DataError, match=r"test\.jsonl:2: malformed JSON"):
        import_jsonl(tmp_path / "j", dst, force=True)
    assert listing(dst) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j", "root"]  # no temporary folder left behind


def test_cli_import_errors_are_one_line_exit_2(tmp_path, capsys):
    src = put(tmp_path / "src", redial_files())
    put(tmp_path / "full", {"x.txt": "x"})
    cases = [
        (["data", "import", "redial", str(src), str(tmp_path / "full")], r"destination folder is not empty"),
        (["data", "import", "csv", str(src), str(tmp_path / "o")], r"invalid choice: 'csv'"),
        (["data", "import", "redial", str(src), str(tmp_path / "o"), "--valid-fraction", "1.5"],
         r"--valid-fraction: expected a number strictly between 0 and 1, got 1.5"),
        (["data", "import", "jsonl", str(src), str(tmp_path / "o"), "--strict"],
         r"--strict and --no-link-text apply to inspired-tsv only"),
        (["data", "import", "inspired-tsv", str(tmp_path / "nowhere"), str(tmp_path / "o")],
         r"nowhere: source folder does not exist"),
    ]
    for argv, pattern in cases:
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors (bad choice, bad option value) exit from the parser
            code = e.code
        assert code == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(pattern, err), err
    assert not (tmp_path / "o").exists()


def test_format_names_and_parameters():
    assert FORMATS == ("redial", "inspired-tsv", "jsonl")
    with pytest.raises(InvalidParameter, match=r"parameter format='csv' \(str\): expected one of redial"):
        import_data("csv", ".", ".")


# =============================================================================================================
# the validation split rule
# =============================================================================================================
def test_carve_rule_is_seeded_order_free_and_never_empty():
    ids = [str(i) for i in range(2000)]
    train, valid = carve_valid(ids, str, 0.1, 0, "train")
    assert 150 < len(valid) < 250 and len(train) + len(valid) == 2000
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert set(carve_valid(shuffled, str, 0.1, 0, "train")[1]) == set(valid)  # the id decides, not the order
    assert set(carve_valid(ids[:500], str, 0.1, 0, "train")[1]) == set(valid) & set(ids[:500])
    assert set(carve_valid(ids, str, 0.1, 1, "train")[1]) != set(valid)  # another seed, another split
    assert [len(x) for x in carve_valid(["a", "b"], str, 0.01, 0, "train")] == [1, 1]
    assert [len(x) for x in carve_valid(["a", "b"], str, 0.99, 0, "train")] == [1, 1]
    with pytest.raises(DataError, match="1 training dialog"):
        carve_valid(["a"], str, 0.1, 0, "train.jsonl")
    assert "sha256('mscrs-valid:7:<dialog id>')" in valid_rule(0.2, 7)


def test_movie_index_prefers_the_film_of_the_year():
    idx = MovieIndex(INSPIRED_ENT)
    assert idx.resolve("Joker (2019)") == 1
    assert idx.resolve("Joker (1966)") == 2
    assert idx.resolve("Joker (1970)") is None  # only films of other years: not this film
    assert idx.resolve("Full Metal Jacket (1987)") == 0 and idx.resolve("full metal jacket") == 0
    assert idx.resolve("Toy Story 4 (2019)") is None


# =============================================================================================================
# malformed and hostile inputs: one line naming the file and line, nothing written
# =============================================================================================================
DEEP = "[" * 100_000 + "]" * 100_000
D1 = redial_dialog("1")
I_ROWS = inspired_dialog("d0")


def _edit_tsv(i: int, col: int, value: str) -> str:
    rows = list(I_ROWS)
    f = rows[i].split("\t")
    f[col] = value
    rows[i] = "\t".join(f)
    return tsv(*rows)


# (case id, format, {file: new content}, file named, line named or None, pattern, importer options)
MALFORMED = [
    # -- ReDial release --
    ("redial-truncated-json", "redial", {"train_data.jsonl": jl(D1) + '{"conversationId": "2", \n'},
     "train_data.jsonl", 2, r"malformed JSON .*expected one JSON value per line", {}),
    ("redial-invalid-utf8", "redial", {"train_data.jsonl": jl(D1).encode() + b'{"text": "caf\xe9"}\n'},
     "train_data.jsonl", 2, r"invalid UTF-8 \(byte 0xe9", {}),
    ("redial-deep-nesting", "redial", {"test_data.jsonl": DEEP + "\n"}, "test_data.jsonl", 1, r"too deep", {}),
    ("redial-line-is-a-list", "redial", {"train_data.jsonl": jl(D1, [D1])}, "train_data.jsonl", 2,
     r"expected a JSON object \(one ReDial dialog\)", {}),
    ("redial-missing-messages", "redial", {"train_data.jsonl": jl({k: v for k, v in D1.items() if k != "messages"})},
     "train_data.jsonl", 1, r"lacks the field\(s\) \['messages'\]", {}),
    ("redial-mentions-string", "redial", {"train_data.jsonl": jl(D1, {**D1, "conversationId": "2",
                                                                     "movieMentions": "111"})},
     "train_data.jsonl", 2, r"'movieMentions' is str '111'; expected an object", {}),
    ("redial-message-text-int", "redial", {"train_data.jsonl": jl(rd("1", (1, 5)))}, "train_data.jsonl", 1,
     r"message 0: expected an object with an integer 'senderWorkerId' and a string 'text'", {}),
    ("redial-id-bool", "redial", {"train_data.jsonl": jl({**D1, "conversationId": True})}, "train_data.jsonl", 1,
     r"'conversationId' is bool True", {}),
    ("redial-worker-string", "redial", {"test_data.jsonl": jl({**D1, "initiatorWorkerId": "1"})},
     "test_data.jsonl", 1, r"'initiatorWorkerId' is str '1'; expected an integer worker id", {}),
    ("redial-id-twice-in-train", "redial", {"train_data.jsonl": jl(D1, redial_dialog("2"), D1)},
     "train_data.jsonl", 3, r"conversationId 1 also appears at .*train_data\.jsonl:1", {}),
    ("redial-id-in-train-and-test", "redial", {"test_data.jsonl": jl(redial_dialog("91"), redial_dialog("3"))},
     "test_data.jsonl", 2, r"conversationId 3 also appears at .*train_data\.jsonl:3.*leaks", {}),
    ("redial-empty-test", "redial", {"test_data.jsonl": "\n"}, "test_data.jsonl", None,
     r"no dialogs to import for the test split", {}),
    ("redial-only-empty-dialogs", "redial", {"test_data.jsonl": jl(rd("99"))}, "test_data.jsonl", None,
     r"no dialogs to import for the test split", {}),
    ("redial-csv-header", "redial", {"movies_with_mentions.csv": "id,name\n111,B\n"}, "movies_with_mentions.csv",
     1, r"expected the header movieId,movieName", {}),
    ("redial-csv-bad-id", "redial", {"movies_with_mentions.csv": "movieId,movieName\n111,B\nx1,C\n"},
     "movies_with_mentions.csv", 3, r"movieId 'x1' is not a non-negative integer", {}),
    ("redial-kg-item-bool", "redial", {"kg/movie_entity_ids.json": "[1, true]"}, "kg/movie_entity_ids.json", None,
     r"item id True \(bool\) is not an entity id", {}),
    ("redial-kg-movie-uri-int", "redial", {"kg/movie2entity.json": '{"111": 5}'}, "kg/movie2entity.json", None,
     r"movie '111' maps to int 5; expected a URI string or null", {}),
    ("redial-kg-entity-gap", "redial", {"kg/entity2id.json": json.dumps({"a": 0, "b": 2})}, "kg/entity2id.json",
     None, r"contiguous integers 0\.\.1; id 1 is missing", {}),
    ("redial-kg-self-loops", "redial", {"kg/dbpedia_subkg.json": '{"1": [[0, 1]]}'}, "kg/dbpedia_subkg.json", None,
     r"only self-loops", {}),
    ("redial-missing-test", "redial", {"test_data.jsonl": None}, "test_data.jsonl", None,
     r"missing ReDial test file", {}),
    # -- INSPIRED release (TSV) --
    ("tsv-field-count", "inspired-tsv", {"train.tsv": tsv(I_ROWS[0], I_ROWS[1] + "\textra")}, "train.tsv", 3,
     r"expected 19 tab-separated fields as in the header, found 20", {}),
    ("tsv-missing-column", "inspired-tsv", {"train.tsv": HEADER.replace("speaker", "who") + "\n"}, "train.tsv", 1,
     r"header lacks the column\(s\) speaker", {}),
    ("tsv-repeated-column", "inspired-tsv", {"train.tsv": HEADER.replace("movie_id", "text") + "\n"}, "train.tsv",
     1, r"header repeats the column\(s\) text", {}),
    ("tsv-header-only", "inspired-tsv", {"test.tsv": HEADER + "\n"}, "test.tsv", None, r"no utterance rows", {}),
    ("tsv-speaker", "inspired-tsv", {"train.tsv": _edit_tsv(2, 2, "BOT")}, "train.tsv", 4,
     r"speaker 'BOT'; expected RECOMMENDER or SEEKER", {}),
    ("tsv-utt-id", "inspired-tsv", {"train.tsv": _edit_tsv(0, 1, "one")}, "train.tsv", 2,
     r"utt_id 'one' is not a non-negative integer", {}),
    ("tsv-turn-id-negative", "inspired-tsv", {"train.tsv": _edit_tsv(1, 3, "-1")}, "train.tsv", 3,
     r"turn_id '-1' is not a non-negative integer", {}),
    ("tsv-empty-dialog-id", "inspired-tsv", {"train.tsv": _edit_tsv(4, 0, " ")}, "train.tsv", 6,
     r"empty dialog_id", {}),
    ("tsv-utt-id-repeated", "inspired-tsv", {"train.tsv": _edit_tsv(3, 1, "2")}, "train.tsv", 5,
     r"dialog d0: utt_id 2 repeats line 3", {}),
    ("tsv-dict-is-a-list", "inspired-tsv", {"train.tsv": _edit_tsv(0, 9, "['Joker (2019)']")}, "train.tsv", 2,
     r"movie_dict is a list .*expected a dict \{name: index\}", {}),
    ("tsv-dict-values-not-int", "inspired-tsv", {"train.tsv": _edit_tsv(2, 11, "{'Tom Hanks': 'lead'}")},
     "train.tsv", 4, r"actor_dict is a dict .*expected a dict \{name: index\}", {}),
    ("tsv-dict-not-literal-strict", "inspired-tsv", {"train.tsv": _edit_tsv(1, 9, "{'Joker (2019): 0}")},
     "train.tsv", 3, r"movie_dict .* is not a Python literal", {"strict": True}),
    ("tsv-dict-code-strict", "inspired-tsv", {"train.tsv": _edit_tsv(1, 12, "__import__('os').system('false')")},
     "train.tsv", 3, r"director_dict .*is not a Python literal", {"strict": True}),
    ("tsv-dialog-in-two-files", "inspired-tsv", {"test.tsv": tsv(*inspired_dialog("t1"), *inspired_dialog("d3"))},
     "test.tsv", 7, r"dialog_id d3 also appears at .*train\.tsv:17", {}),
    ("tsv-invalid-utf8", "inspired-tsv", {"test.tsv": tsv(*inspired_dialog("t1")).encode() + b"t9\t1\xff\n"},
     "test.tsv", 7, r"invalid UTF-8 \(byte 0xff", {}),
    ("tsv-no-movie-linkable", "inspired-tsv", {"train.tsv": tsv(*inspired_dialog("d0", "Nope (1999)"),
                                                                *inspired_dialog("d1", "Nope (1999)")),
                                               "test.tsv": tsv(*inspired_dialog("t1", "Nada (2000)"))},
     "train.tsv", None, r"no movie name could be linked to the graph", {}),
    ("tsv-one-train-dialog-cannot-be-carved", "inspired-tsv", {"train.tsv": tsv(*inspired_dialog("d0"))},
     "train.tsv", None, r"1 training dialog\(s\): carving a validation split needs at least 2", {}),
    ("tsv-kg-relation-out-of-range", "inspired-tsv", {"kg/dbpedia_subkg.json": '{"0": [[7, 4]]}'},
     "kg/dbpedia_subkg.json", None, r"relation id 7 outside 0\.\.2", {}),
    # -- generic JSON Lines --
    ("jsonl-line-is-a-list", "jsonl", {"train.jsonl": jl(gd("a"), [1])}, "train.jsonl", 2,
     r"found list \[1\]; expected a JSON object", {}),
    ("jsonl-missing-turns", "jsonl", {"train.jsonl": jl({"dialog_id": "a"})}, "train.jsonl", 1,
     r"dialog lacks the key\(s\) turns", {}),
    ("jsonl-turns-object", "jsonl", {"train.jsonl": jl(gd("a", turns={"role": "seeker"}))}, "train.jsonl", 1,
     r"'turns' is dict .*expected a list of turns", {}),
    ("jsonl-role", "jsonl", {"test.jsonl": jl(gd("t", {"role": "bot", "text": "x"}))}, "test.jsonl", 1,
     r"turn 0: 'role' is str 'bot'; expected \"seeker\" or \"recommender\"", {}),
    ("jsonl-text-null", "jsonl", {"train.jsonl": jl(gd("a", {"role": "seeker", "text": None}))}, "train.jsonl", 1,
     r"turn 0: 'text' is NoneType None; expected a string", {}),
    ("jsonl-items-string", "jsonl", {"train.jsonl": jl(gd("a", {"role": "seeker", "text": "", "items": "0"}))},
     "train.jsonl", 1, r"'items' is str '0'; expected a list of entity ids", {}),
    ("jsonl-item-bool", "jsonl", {"train.jsonl": jl(gd("a", {"role": "seeker", "text": "", "items": [True]}))},
     "train.jsonl", 1, r"'items' holds bool True; expected an entity id", {}),
    ("jsonl-entity-float", "jsonl", {"train.jsonl": jl(gd("a", {"role": "seeker", "text": "", "entities": [1.0]}))},
     "train.jsonl", 1, r"'entities' holds float 1\.0", {}),
    ("jsonl-negative-id", "jsonl", {"train.jsonl": jl(gd("a", {"role": "seeker", "text": "", "items": [-3]}))},
     "train.jsonl", 1, r"negative id -3", {}),
    ("jsonl-dialog-id-empty", "jsonl", {"train.jsonl": jl(gd(""))}, "train.jsonl", 1,
     r"'dialog_id' is str ''; expected a non-empty string or an integer", {}),
    ("jsonl-dialog-id-twice", "jsonl", {"test.jsonl": jl(gd("t"), gd("g2"))}, "test.jsonl", 2,
     r"dialog_id g2 also appears at .*train\.jsonl:3", {}),
    ("jsonl-nan", "jsonl", {"train.jsonl": '{"dialog_id": "a", "turns": [], "x": NaN}\n'}, "train.jsonl", 1,
     r"NaN is not valid JSON", {}),
    ("jsonl-empty-train", "jsonl", {"train.jsonl": ""}, "train.jsonl", None, r"no dialogs to import", {}),
    ("jsonl-kg-missing", "jsonl", {"dbpedia_subkg.json": None}, "dbpedia_subkg.json", None,
     r"no knowledge graph found", {}),
]


def _source(fmt: str, root: Path) -> Path:
    files = {"redial": redial_files, "inspired-tsv": inspired_files, "jsonl": jsonl_files}[fmt]()
    return put(root, files)


@pytest.mark.parametrize("case,fmt,edits,rel,line,pattern,opts", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_is_one_line_naming_file_and_line(tmp_path, case, fmt, edits, rel, line, pattern, opts):
    src = _source(fmt, tmp_path / "src")
    for f, data in edits.items():
        if data is None:
            (src / f).unlink()
        else:
            put(src, {f: data})
    kg = {"inspired-tsv": {"kg": src / "kg"}}.get(fmt, {})
    dst = tmp_path / "out" / "root"
    with pytest.raises(DataError) as info:
        import_data(fmt, src, dst, **kg, **opts)
    msg = str(info.value)
    assert "\n" not in msg, msg
    where = f"{src / rel}:{line}: " if line is not None else f"{src / rel}: "
    assert msg.startswith(where), msg
    assert re.search(pattern, msg), msg
    assert not dst.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no temporary folder left


@pytest.mark.parametrize("case", ["redial-csv-bad-id", "tsv-speaker", "jsonl-role"])
def test_malformed_input_through_the_cli(tmp_path, capsys, case):
    _, fmt, edits, rel, line, pattern, opts = next(c for c in MALFORMED if c[0] == case)
    src = _source(fmt, tmp_path / "src")
    put(src, edits)
    argv = ["data", "import", fmt, str(src), str(tmp_path / "root")] + (
        ["--kg", str(src / "kg")] if fmt == "inspired-tsv" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mscrs: error: {src / rel}:{line}: ") and err.count("\n") == 1, err
    assert not (tmp_path / "root").exists()


DESTINATIONS = [
    ("dst-is-a-file", lambda t: (put(t, {"f": "x"}) / "f", {}), r"destination is a file"),
    ("dst-not-empty", lambda t: (put(t, {"d/x": "x"}) / "d", {}), r"destination folder is not empty"),
    ("src-inside-replaced-folder", lambda t: (t / "src", {"force": True}),
     r"is an input of this import and lies in .*/redial, which the import replaces"),
    ("force-not-bool", lambda t: (t / "new", {"force": "yes"}), r"parameter force='yes' \(str\)"),
    ("fraction-out-of-range", lambda t: (t / "new", {"valid_fraction": 1.0}), r"parameter valid_fraction=1\.0"),
    ("seed-string", lambda t: (t / "new", {"seed": "0"}), r"parameter seed='0' \(str\): expected an integer"),
    ("dst-none", lambda t: (None, {}), r"parameter dst=None"),
]


@pytest.mark.parametrize("case,make,pattern", DESTINATIONS, ids=[c[0] for c in DESTINATIONS])
def test_bad_destination_or_parameter_is_refused(tmp_path, case, make, pattern):
    src = put(tmp_path / "src" / "redial", redial_files()).parent  # SRC/redial/... (the project's layout)
    dst, opts = make(tmp_path)
    with pytest.raises((DataError, InvalidParameter)) as info:
        import_redial(src, dst, **opts)
    assert re.search(pattern, str(info.value)) and "\n" not in str(info.value), str(info.value)
    assert listing(src / "redial") == listing(put(tmp_path / "again", redial_files()))  # the source is untouched


# =============================================================================================================
# property-based: the generic JSON Lines reader and the importers
# =============================================================================================================
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
IDS = st.lists(st.one_of(st.integers(0, 8), st.sampled_from(sorted(INSPIRED_ENT))), max_size=4)
TURN = st.fixed_dictionaries({"role": st.sampled_from(["seeker", "recommender", "SEEKER", "Recommender"]),
                              "text": TEXT, "items": st.lists(st.integers(0, 1), max_size=2), "entities": IDS})
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3), max_leaves=12)


@given(st.one_of(JSON, st.fixed_dictionaries({"dialog_id": JSON, "turns": JSON}),
                 st.fixed_dictionaries({"dialog_id": TEXT, "turns": st.lists(st.one_of(TURN, JSON), max_size=3)})))
def test_generic_reader_accepts_or_names_the_line(obj):
    try:
        d = parse_dialog(obj, Path("x.jsonl"), 7)
    except DataError as e:
        assert str(e).startswith("x.jsonl:7: ") and "\n" not in str(e)
    else:
        assert isinstance(d, GenericDialog) and len(d.turns) == len(obj["turns"])


def _dialogs(prefix):
    return st.lists(st.lists(TURN, min_size=1, max_size=4), min_size=1, max_size=4).map(
        lambda ds: [{"dialog_id": f"{prefix}{i}", "turns": t} for i, t in enumerate(ds)])


@given(_dialogs("a"), _dialogs("b"), st.integers(0, 3))
def test_jsonl_import_round_trips_through_the_reader(train, test, seed):
    train = train + [{"dialog_id": "anchor", "turns": [{"role": "recommender", "text": "t", "items": [0]}]},
                     {"dialog_id": "anchor2", "turns": [{"role": "seeker", "text": "u"}]}]
    with tempfile.TemporaryDirectory() as tmp:
        src = put(Path(tmp) / "src", {"train.jsonl": jl(*train), "test.jsonl": jl(*test),
                                      **{k.replace("kg/", ""): v for k, v in INSPIRED_KG.items()}})
        import_jsonl(src, Path(tmp) / "root", seed=seed)
        ds = load_inspired(Path(tmp) / "root")
        ids = [line.split("\t") for line in (Path(tmp) / "root/inspired/dialog_ids.tsv").read_text().splitlines()[1:]]
    got = {}
    for (split, n, did) in ids:
        got[did] = ds.splits[split][int(n) - 1]
    e2i = INSPIRED_ENT
    for d in train + test:
        turns = got[d["dialog_id"]].turns
        assert len(turns) == len(d["turns"])
        for t, want in zip(turns, d["turns"]):
            items = tuple(dict.fromkeys(want.get("items", [])))
            ents = tuple(dict.fromkeys(e2i.get(x, x) for x in want.get("entities", []) if e2i.get(x, x) not in items))
            assert (t.role, t.text, t.items, t.entities) == (want["role"].lower(), want["text"], items, ents)
    assert sorted(got) == sorted(d["dialog_id"] for d in train + test)


MSG_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="@"), max_size=30)


@given(st.lists(st.lists(st.tuples(st.sampled_from([1, 2]), MSG_TEXT, st.sampled_from(["", " @111", " @333"])),
                         min_size=1, max_size=5), min_size=2, max_size=6))
def test_redial_import_keeps_every_dialog_and_merges_speakers(dialogs):
    rows = [rd(str(i), *((w, t + m) for w, t, m in msgs)) for i, msgs in enumerate(dialogs)]
    files = redial_files()
    files["train_data.jsonl"] = jl(*rows)
    with tempfile.TemporaryDirectory() as tmp:
        src = put(Path(tmp) / "src", files)
        import_redial(src, Path(tmp) / "root")
        ds = load_redial(Path(tmp) / "root", link_entities=False)
    got = {d.dialog_id: d for s in ("train", "valid") for d in ds.splits[s]}
    assert sorted(got) == sorted(str(i) for i in range(len(dialogs)))
    names = {"@111": "B (2000)", "@333": "C (2001)"}
    for i, msgs in enumerate(dialogs):
        turns = got[str(i)].turns
        speakers = [w for k, (w, _, _) in enumerate(msgs) if k == 0 or msgs[k - 1][0] != w]
        assert [t.role for t in turns] == ["seeker" if w == 1 else "recommender" for w in speakers]
        want_items = [e for _, _, m in msgs if m for e in [{"@111": 1, "@333": 3}[m.strip()]]]
        assert sorted({i for t in turns for i in t.items}) == sorted(set(want_items))
        texts = " ".join(t.text for t in turns)
        assert texts == " ".join(t + (" " + names[m.strip()] if m else "") for _, t, m in msgs)


TSV_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"),
                   max_size=30).filter(lambda s: "QUOTATION_MARK" not in s)


@given(st.lists(st.tuples(st.sampled_from(["SEEKER", "RECOMMENDER"]), TSV_TEXT), min_size=1, max_size=6))
def test_inspired_tsv_import_merges_and_keeps_text(utts):
    rows = [row("p", k + 1, spk, text) for k, (spk, text) in enumerate(utts)]
    files = inspired_files()
    files["test.tsv"] = tsv(*rows, *inspired_dialog("t2"))
    with tempfile.TemporaryDirectory() as tmp:
        src = put(Path(tmp) / "src", files)
        import_inspired_tsv(src, Path(tmp) / "root", kg=src / "kg")
        ds = load_inspired(Path(tmp) / "root")
    want: list[tuple[str, list[str]]] = []
    for spk, text in utts:
        if want and want[-1][0] == spk:
            want[-1][1].append(text)
        else:
            want.append((spk, [text]))
    turns = ds.splits["test"][0].turns
    assert [(t.role, t.text) for t in turns] == [
        (spk.lower(), " ".join(x.strip() for x in texts if x.strip())) for spk, texts in want]


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
                        max_size=60), min_size=1, max_size=4))
def test_inspired_tsv_reader_rejects_junk_rows_with_file_and_line(junk):
    from mscrs_core.data.importers.inspired_tsv import read_inspired_tsv

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "train.tsv"
        p.write_text(tsv(*I_ROWS[:2], *junk), encoding="utf-8")
        try:
            out = read_inspired_tsv(p, strict=True)
        except DataError as e:
            assert str(e).startswith(f"{p}:") and "\n" not in str(e)
        else:
            assert "d0" in out
