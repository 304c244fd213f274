"""Issue 12, items 4-5: every malformed or hostile input gets one clear line naming the file and line (or the
parameter); the CLI answers with exit code 2; nothing reaches the network unless asked; the API key stays
with its origin. Each data case writes a tiny data root (never the shared data) and breaks one thing."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mscrs_core.cli import main
from mscrs_core.data import DataError, InvalidParameter, load_dataset, load_inspired, load_redial
from mscrs_core.data.files import DataFiles

R = "<http://dbpedia.org/resource/"
O = "<http://dbpedia.org/ontology/"
TURN = {"text": "hi", "role": "SEEKER", "entity_link": [], "movie_link": []}
TURN2 = {"text": "try B", "role": "RECOMMENDER", "entity_link": [f"{R}A>"], "movie_link": [f"{R}B_(film)>"]}


def dialog(cid: str = "1", **over) -> dict:
    d = {"conversationId": cid, "initiatorWorkerId": 1, "respondentWorkerId": 2,
         "movieMentions": {"111": "B (2000)"},
         "messages": [{"senderWorkerId": 1, "text": "any horror?", "messageId": 1},
                      {"senderWorkerId": 2, "text": "try @111", "messageId": 2}]}
    d.update(over)
    return d


def jl(*objs) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


def tiny_root(root: Path) -> Path:
    """A complete, valid, tiny data root with both datasets."""
    ent = {f"{R}A>": 0, f"{R}B_(film)>": 1, f"{R}Horror_film>": 2}
    files = {
        "inspired/entity2id.json": json.dumps(ent, indent=1),
        "inspired/relation2id.json": json.dumps({f"{O}starring>": 0, f"{O}genre>": 1}, indent=1),
        "inspired/item_ids.json": "[1]",
        "inspired/dbpedia_subkg.json": json.dumps({"1": [[0, 0], [1, 2]], "0": [[0, 1]]}, indent=1),
        "redial/kg/entity2id.json": json.dumps(ent, indent=1),
        "redial/kg/movie2entity.json": json.dumps({"111": f"{R}B_(film)>"}),
        "redial/kg/movie_entity_ids.json": "[1]",
        "redial/kg/dbpedia_subkg.json": json.dumps({"1": [[0, 0], [0, 2]]}, indent=1),
        "redial/movies_with_mentions.csv": "movieId,movieName,nbMentions\n111,B (2000),1\n",
    }
    for i, split in enumerate(("train", "valid", "test")):
        files[f"inspired/{split}_data_dbpedia.jsonl"] = jl([TURN, TURN2], [TURN])
        files[f"redial/{split}_data.jsonl"] = jl(dialog(f"{i}1"), dialog(f"{i}2"))
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


def write(root: Path, rel: str, data: str | bytes) -> None:
    p = root / rel
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


DEEP = "[" * 100_000 + "]" * 100_000
I_TRAIN = "inspired/train_data_dbpedia.jsonl"
D_TRAIN = "redial/train_data.jsonl"

# (case id, dataset, {file: new content}, file the message must name, line it must name or None, pattern)
CASES = [
    # -- INSPIRED dialogs (JSON Lines) --
    ("inspired-invalid-utf8", "inspired", {I_TRAIN: jl([TURN]).encode() + b'[{"text": "caf\xe9"}]\n'},
     I_TRAIN, 2, r"invalid UTF-8 \(byte 0xe9"),
    ("inspired-deep-nesting", "inspired", {I_TRAIN: jl([TURN]) + DEEP + "\n"}, I_TRAIN, 2, r"nested .* too deep"),
    ("inspired-truncated-line", "inspired", {I_TRAIN: jl([TURN]) + '[{"text": "hi", \n'}, I_TRAIN, 2,
     r"malformed JSON"),
    ("inspired-nan", "inspired", {I_TRAIN: '[{"text": "hi", "role": "SEEKER", "x": NaN}]\n'}, I_TRAIN, 1,
     r"NaN is not valid JSON"),
    ("inspired-object-not-list", "inspired", {I_TRAIN: jl({"text": "hi"})}, I_TRAIN, 1,
     r"expected a JSON list of turns"),
    ("inspired-entity-link-string", "inspired", {I_TRAIN: jl([TURN], [{**TURN, "entity_link": f"{R}A>"}])},
     I_TRAIN, 2, r"'entity_link' is str .*expected a list of URI strings"),
    ("inspired-movie-link-ints", "inspired", {I_TRAIN: jl([{**TURN, "movie_link": [1]}])}, I_TRAIN, 1,
     r"'movie_link' is list"),
    ("inspired-role-list", "inspired", {I_TRAIN: jl([{**TURN, "role": ["SEEKER"]}])}, I_TRAIN, 1,
     r"role \['SEEKER'\], expected SEEKER or RECOMMENDER"),
    ("inspired-text-int", "inspired", {I_TRAIN: jl([{**TURN, "text": 5}])}, I_TRAIN, 1, r"string 'text'"),
    ("inspired-empty-train-split", "inspired", {I_TRAIN: "[]\n[]\n"}, I_TRAIN, None,
     r"train split has no dialogs"),
    ("inspired-empty-file", "inspired", {"inspired/valid_data_dbpedia.jsonl": ""},
     "inspired/valid_data_dbpedia.jsonl", None, r"valid split has no dialogs"),
    # -- INSPIRED vocabularies and graph (JSON documents) --
    ("relation2id-gap", "inspired", {"inspired/relation2id.json": json.dumps({f"{O}a>": 0, f"{O}b>": 2})},
     "inspired/relation2id.json", None, r"contiguous integers 0\.\.1; id 1 is missing"),
    ("relation2id-negative", "inspired",
     {"inspired/relation2id.json": json.dumps({f"{O}a>": 0, f"{O}b>": -1}, indent=1)},
     "inspired/relation2id.json", 3, r"negative id -1"),
    ("relation2id-duplicate-id", "inspired",
     {"inspired/relation2id.json": json.dumps({f"{O}a>": 0, f"{O}b>": 0}, indent=1)},
     "inspired/relation2id.json", 3, r"share the id 0"),
    ("relation2id-bool-id", "inspired",
     {"inspired/relation2id.json": json.dumps({f"{O}a>": False, f"{O}b>": True}, indent=1)},
     "inspired/relation2id.json", 2, r"has id False; expected a non-negative integer"),
    ("relation2id-list", "inspired", {"inspired/relation2id.json": "[0, 1]"}, "inspired/relation2id.json", None,
     r"expected a non-empty JSON object"),
    ("entity2id-string-ids", "inspired", {"inspired/entity2id.json": json.dumps({f"{R}A>": "0"}, indent=1)},
     "inspired/entity2id.json", 2, r"has id '0'"),
    ("entity2id-invalid-utf8", "inspired", {"inspired/entity2id.json": b'{\n"a": 0,\n"\xff": 1\n}'},
     "inspired/entity2id.json", 3, r"invalid UTF-8 \(byte 0xff at column 2\)"),
    ("entity2id-deep-nesting", "inspired", {"inspired/entity2id.json": '{"a":\n' + DEEP + "}"},
     "inspired/entity2id.json", 2, r"nested 100001 levels deep"),
    ("item-ids-bool", "inspired", {"inspired/item_ids.json": "[true]"}, "inspired/item_ids.json", None,
     r"item id True \(bool\) is not an integer entity id"),
    ("item-ids-string", "inspired", {"inspired/item_ids.json": '"1"'}, "inspired/item_ids.json", None,
     r"expected a non-empty JSON list"),
    ("item-ids-empty", "inspired", {"inspired/item_ids.json": "[]"}, "inspired/item_ids.json", None,
     r"non-empty JSON list"),
    ("kg-only-self-loops", "inspired", {"inspired/dbpedia_subkg.json": '{"0": [[0, 0]], "1": [[1, 1]]}'},
     "inspired/dbpedia_subkg.json", None, r"only self-loops"),
    ("kg-bool-edge", "inspired", {"inspired/dbpedia_subkg.json": '{\n"0": [[0, 1]],\n"1": [[true, 2]]\n}'},
     "inspired/dbpedia_subkg.json", 3, r"edge \[True, 2\] is not a \[relation_id, tail_id\] pair"),
    ("kg-edges-not-list", "inspired", {"inspired/dbpedia_subkg.json": '{"0": {"0": 1}}'},
     "inspired/dbpedia_subkg.json", 1, r"expected a list of \[relation_id, tail_id\] pairs, found dict"),
    ("kg-head-not-int", "inspired", {"inspired/dbpedia_subkg.json": '{"zero": [[0, 1]]}'},
     "inspired/dbpedia_subkg.json", 1, r"head key 'zero' is not an integer"),
    ("kg-relation-out-of-range", "inspired", {"inspired/dbpedia_subkg.json": '{"0": [[7, 1]]}'},
     "inspired/dbpedia_subkg.json", None, r"relation id 7 outside 0\.\.1"),
    ("kg-truncated", "inspired", {"inspired/dbpedia_subkg.json": '{"0": [[0, 1]],\n"1": [[0'},
     "inspired/dbpedia_subkg.json", 2, r"malformed JSON"),
    # -- ReDial dialogs --
    ("redial-movieMentions-string", "redial", {D_TRAIN: jl(dialog("1", movieMentions="B"))}, D_TRAIN, 1,
     r"'movieMentions' is str 'B'; expected an object"),
    ("redial-messages-dict", "redial", {D_TRAIN: jl(dialog("1"), dialog("2", messages={"0": "hi"}))}, D_TRAIN, 2,
     r"'messages' is dict"),
    ("redial-conversationId-bool", "redial", {D_TRAIN: jl(dialog(True))}, D_TRAIN, 1, r"'conversationId' is bool"),
    ("redial-worker-id-string", "redial", {D_TRAIN: jl(dialog("1", initiatorWorkerId="1"))}, D_TRAIN, 1,
     r"'initiatorWorkerId' is str"),
    ("redial-sender-bool", "redial",
     {D_TRAIN: jl(dialog("1", messages=[{"senderWorkerId": True, "text": "hi"}]))}, D_TRAIN, 1,
     r"message 0: expected an object with an integer 'senderWorkerId'"),
    ("redial-missing-field", "redial", {D_TRAIN: jl({"conversationId": "1"})}, D_TRAIN, 1,
     r"lacks the field\(s\)"),
    ("redial-id-in-train-and-test", "redial", {"redial/test_data.jsonl": jl(dialog("21"), dialog("02"))},
     "redial/test_data.jsonl", 2, r"conversationId 02 also appears at .*train_data\.jsonl:2"),
    ("redial-id-twice-in-a-split", "redial", {D_TRAIN: jl(dialog("5"), dialog("6"), dialog("5"))}, D_TRAIN, 3,
     r"conversationId 5 also appears at .*train_data\.jsonl:1"),
    ("redial-empty-valid-split", "redial", {"redial/valid_data.jsonl": "\n\n"}, "redial/valid_data.jsonl", None,
     r"valid split has no dialogs"),
    ("redial-invalid-utf8", "redial", {D_TRAIN: jl(dialog("1")).encode() + b"\x80\n"}, D_TRAIN, 2,
     r"invalid UTF-8 \(byte 0x80 at column 1\)"),
    ("redial-deep-nesting", "redial", {D_TRAIN: DEEP + "\n"}, D_TRAIN, 1, r"too deep"),
    ("csv-invalid-utf8", "redial",
     {"redial/movies_with_mentions.csv": b"movieId,movieName,nbMentions\n111,B (2000),1\n112,Caf\xe9,1\n"},
     "redial/movies_with_mentions.csv", 3, r"invalid UTF-8 \(byte 0xe9 at column 8\)"),
    ("csv-bad-header", "redial", {"redial/movies_with_mentions.csv": "id,name\n111,B\n"},
     "redial/movies_with_mentions.csv", 1, r"expected the header movieId,movieName"),
    ("csv-movie-id-not-int", "redial",
     {"redial/movies_with_mentions.csv": "movieId,movieName\n111,B\nx12,C\n"},
     "redial/movies_with_mentions.csv", 3, r"movieId 'x12' is not a non-negative integer"),
    ("movie-entity-ids-bool", "redial", {"redial/kg/movie_entity_ids.json": "[1, false]"},
     "redial/kg/movie_entity_ids.json", None, r"item id False \(bool\)"),
    ("movie2entity-int-uri", "redial", {"redial/kg/movie2entity.json": '{"111": 1}'},
     "redial/kg/movie2entity.json", None, r"movie '111' maps to int 1; expected a URI string or null"),
]


@pytest.mark.parametrize("case,dataset,edits,rel,line,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_data_is_one_line_naming_file_and_line(tmp_path, case, dataset, edits, rel, line, pattern):
    root = tiny_root(tmp_path)
    for f, data in edits.items():
        write(root, f, data)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(DataError) as info:
        load_dataset(dataset, root, check=False)
    msg = str(info.value)
    assert "\n" not in msg, msg
    where = f"{root / rel}:{line}: " if line is not None else f"{root / rel}: "
    assert msg.startswith(where), msg
    assert re.search(pattern, msg), msg
    assert info.value.path == str(root / rel) and info.value.line == line
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # a reader writes nothing


def test_tiny_roots_are_valid_and_bom_is_accepted(tmp_path):
    root = tiny_root(tmp_path)
    write(root, D_TRAIN, b"\xef\xbb\xbf" + jl(dialog("01")).encode())
    ds = load_redial(root, check=False)
    assert [len(ds.splits[s]) for s in ("train", "valid", "test")] == [1, 2, 2]
    assert ds.splits["train"][0].turns[1].items == (1,)
    ins = load_inspired(root, check=False)
    assert ins.kg.relation_names == ["starring", "genre"]
    assert ins.splits["train"][0].turns[1].items == (1,) and ins.splits["train"][0].turns[1].entities == (0,)


def test_real_data_still_loads(inspired, redial):
    assert [len(inspired.splits[s]) for s in ("train", "valid", "test")] == [801, 99, 99]
    assert sum(len(redial.splits[s]) for s in ("train", "valid", "test")) > 3000


# -- parameters of the wrong type ------------------------------------------------------------------------
PARAMS = [
    ("data_root-int", lambda root: load_dataset("inspired", 5), r"parameter data_root=5 \(int\): expected a folder"),
    ("data_root-bool", lambda root: load_dataset("redial", True), r"parameter data_root=True \(bool\)"),
    ("data_root-empty", lambda root: load_dataset("redial", ""), r"parameter data_root='' \(str\)"),
    ("data_root-bytes", lambda root: DataFiles(b"/tmp"), r"parameter data_root=b'/tmp' \(bytes\)"),
    ("dataset-name-int", lambda root: load_dataset(5), r"parameter name=5 \(int\): expected one of inspired, redial"),
    ("dataset-name-typo", lambda root: load_dataset("redail", root), r"parameter name='redail'"),
    ("check-string", lambda root: load_dataset("inspired", root, check="no"),
     r"parameter check='no' \(str\): expected True or False"),
]


@pytest.mark.parametrize("case,call,pattern", PARAMS, ids=[p[0] for p in PARAMS])
def test_wrong_parameter_names_the_parameter(tmp_path, case, call, pattern):
    with pytest.raises(InvalidParameter) as info:
        call(tiny_root(tmp_path))
    assert "\n" not in str(info.value) and re.search(pattern, str(info.value)), str(info.value)


# -- the CLI: one line on stderr, exit code 2 ---------------------------------------------------------------
try:
    import torch
    HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    HAS_CUDA = False

CLI = [
    ("book-only-typo", ["book", "--only", "01_dta", "--profile", "smoke"], r"unknown chapter '01_dta'.*01_data"),
    ("book-only-two-typos", ["book", "--only", "01_data", "99_x", "7"], r"unknown chapters '99_x', '7'"),
    ("book-only-empty", ["book", "--only"], r"--only: expected at least one argument"),
    ("run-unknown-chapter", ["run", "99_nope"], r"unknown chapter '99_nope'; expected one of: 01_data"),
    ("run-bad-override", ["run", "01_data", "-p", "check_checksums"], r"-p expects NAME=VALUE"),
    ("run-unknown-profile", ["book", "--only", "01_data", "--profile", "huge"], r"unknown profile 'huge'"),
    ("chat-top-k-negative", ["chat", "--checkpoint", "nowhere", "--top-k", "-3"],
     r"--top-k: expected an integer >= 1, got -3"),
    ("chat-top-k-zero", ["chat", "--checkpoint", "nowhere", "--top-k", "0"], r"--top-k: expected an integer >= 1"),
    ("chat-top-k-text", ["chat", "--checkpoint", "nowhere", "--top-k", "ten"], r"--top-k: .*'ten'"),
    ("chat-device-nonsense", ["chat", "--checkpoint", "nowhere", "--device", "gpu0"], r"--device 'gpu0'"),
    ("chat-device-cuda-index", ["chat", "--checkpoint", "nowhere", "--device", "cuda:99"], r"--device cuda:99"),
    ("unknown-command", ["frobnicate"], r"invalid choice: 'frobnicate'"),
    ("stats-missing-root", ["stats", "redial", "--data", "/nonexistent/mscrs"],
     r"/nonexistent/mscrs: data folder does not exist"),
]
if not HAS_CUDA:
    CLI.append(("chat-device-cuda-without-cuda", ["chat", "--checkpoint", "nowhere", "--device", "cuda"],
                r"--device cuda: CUDA is not available"))


@pytest.mark.parametrize("case,argv,pattern", CLI, ids=[c[0] for c in CLI])
def test_cli_error_is_one_line_and_exit_2(tmp_path, capsys, case, argv, pattern):
    out = tmp_path / "out"
    argv = argv + (["--out", str(out)] if argv[0] in ("run", "book") and "--only" != argv[-1] else [])
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("mscrs"), err
    assert re.search(pattern, err), err
    assert not out.exists() or not any(out.iterdir())  # nothing ran, nothing (half-)written


def test_cli_checksum_and_data_errors_are_one_line(tmp_path, capsys):
    root = tiny_root(tmp_path)
    assert main(["stats", "inspired", "--data", str(root)]) == 2  # tiny files differ from the manifest
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(r"ChecksumError: .*inspired/entity2id\.json: expected \d+ bytes", err)
    write(root, "redial/kg/entity2id.json", b"\xff")
    with pytest.raises(DataError, match=r"entity2id\.json:1: invalid UTF-8"):
        load_redial(root, check=False)


def test_cli_debug_shows_the_traceback(capsys):
    assert main(["run", "99_nope", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "UnknownChapterError" in err
    assert err.strip().splitlines()[-1].startswith("mscrs: error: unknown chapter '99_nope'")


def test_cli_in_a_subprocess(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mscrs_core.cli", "book", "--only", "01_dta", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "unknown chapter '01_dta'" in r.stderr
    assert not any(tmp_path.iterdir())


def test_run_book_rejects_a_typo_in_only():
    from mscrs_core.book.runner import UnknownChapterError, run_book
    with pytest.raises(UnknownChapterError, match=r"'01_dta'.*01_data"):
        run_book("smoke", only=["01_dta"])


# -- no network unless asked --------------------------------------------------------------------------------
def test_socket_guard_refuses_non_loopback(_offline_sockets):
    n = len(_offline_sockets)
    with pytest.raises(RuntimeError, match="offline"):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)
    s = socket.socket()
    try:
        with pytest.raises(RuntimeError, match="offline"):
            s.connect(("example.org", 443))
    finally:
        s.close()
    assert len(_offline_sockets) == n + 2
    del _offline_sockets[n:]


def test_hub_name_not_cached_fails_at_once_without_any_request(tmp_path, monkeypatch, _offline_sockets):
    import huggingface_hub.constants as hc
    from mscrs_core.features.text_encoder import TextEncoder
    from mscrs_core.offline import OfflineModelError

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)  # as outside the Makefile: only the library keeps it offline
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    n = len(_offline_sockets)
    t0 = time.monotonic()
    with pytest.raises(OfflineModelError) as info:
        TextEncoder("roberta-base")
    assert time.monotonic() - t0 < 5
    msg = str(info.value)
    assert "\n" not in msg and "'roberta-base'" in msg and "MSCRS_ALLOW_DOWNLOADS=1" in msg and "local folder" in msg
    assert len(_offline_sockets) == n  # not even an attempt


def test_pretrained_source_rules(tmp_path, monkeypatch):
    from mscrs_core.offline import OfflineModelError, pretrained_source

    (tmp_path / "model").mkdir()
    assert pretrained_source(tmp_path / "model") == (str(tmp_path / "model"), {})
    with pytest.raises(OfflineModelError, match="folder does not exist"):
        pretrained_source(tmp_path / "missing")
    with pytest.raises(OfflineModelError, match="folder does not exist"):
        pretrained_source("./no/such/model")
    with pytest.raises(TypeError, match="got int 5"):
        pretrained_source(5)  # type: ignore[arg-type]
    cache = tmp_path / "hub"
    snap = cache / "models--org--tiny" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    assert pretrained_source("org/tiny", cache_dir=cache) == ("org/tiny", {"cache_dir": str(cache),
                                                                          "local_files_only": True})
    with pytest.raises(OfflineModelError, match="not in the local Hugging Face cache"):
        pretrained_source("org/other", cache_dir=cache)
    monkeypatch.setenv("MSCRS_ALLOW_DOWNLOADS", "1")
    assert pretrained_source("org/other", cache_dir=cache) == ("org/other", {"cache_dir": str(cache)})


def test_image_encoder_hub_name_is_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc
    from mscrs_core.features.image_encoder import ImageEncoder
    from mscrs_core.offline import OfflineModelError

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(OfflineModelError, match=r"image encoder 'google/vit-large-patch16-224-in21k'.*MSCRS_ALLOW"):
        ImageEncoder("google/vit-large-patch16-224-in21k")


# -- the describer never sends the key to another origin ------------------------------------------------------
class _Recorder:
    """A loopback HTTP server that records every request's path and Authorization header."""

    def __init__(self, location: str | None = None, code: int = 302):
        self.seen: list[tuple[str, str, str | None]] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                rec.seen.append((self.command, self.path, self.headers.get("Authorization")))
                if location is not None:
                    self.send_response(code)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"choices": [{"message": {"content": "A film."}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


KEY = "sk-test-" + "x" * 20


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_cross_origin_redirect_never_carries_the_key(code):
    from mscrs_core.features.describe_llm import LLMDescriber, LLMDescriberError
    from mscrs_core.features.describer_cache import ItemInfo

    evil = _Recorder()
    front = _Recorder(location=f"http://localhost:{evil.port}/steal", code=code)
    try:
        d = LLMDescriber(f"http://127.0.0.1:{front.port}/v1", "m", KEY, max_retries=0, sleep=lambda s: None,
                         requests_per_second=1000)
        with pytest.raises(LLMDescriberError) as info:
            d.describe([ItemInfo(key="i1", name="A")])
        msg = str(info.value)
        assert KEY not in msg and "\n" not in msg
        if code in (301, 302, 303):  # the redirects urllib would follow for a POST
            assert "another origin (http://localhost:" in msg and "not followed" in msg
        assert front.seen and front.seen[0][2] == f"Bearer {KEY}"
        assert evil.seen == []  # the other origin got nothing, let alone the key
    finally:
        front.close()
        evil.close()


def test_same_origin_redirect_is_followed():
    from mscrs_core.features.describe_llm import LLMDescriber
    from mscrs_core.features.describer_cache import ItemInfo

    class Both(BaseHTTPRequestHandler):
        seen: list = []

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            Both.seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(302)
            self.send_header("Location", "/v2/chat/completions")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):  # noqa: N802
            Both.seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"choices": [{"message": {"content": "A film."}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Both)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        d = LLMDescriber(f"http://127.0.0.1:{httpd.server_address[1]}/v1", "m", KEY, max_retries=0,
                         sleep=lambda s: None)
        assert d.describe([ItemInfo(key="i1", name="A")]) == {"i1": "A film."}
        assert [p for p, _ in Both.seen] == ["/v1/chat/completions", "/v2/chat/completions"]
    finally:
        httpd.shutdown()
        httpd.server_close()
