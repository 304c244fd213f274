"""Item descriptions (Eq. 2): LLMDescriber against a real local HTTP server, the cache, OfflineDescriber."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from mscrs_core.data.errors import DataError
from mscrs_core.data.schema import CRSDataset, KnowledgeGraph
from mscrs_core.features import (Describer, ItemInfo, LLMDescriber, LLMDescriberError, OfflineDescriber,
                                 describe_redial_items, genre_emotions, item_infos_from_kg,
                                 item_infos_from_redial_metadata, load_prompt_template, readable_entity_name)

KEY = "sk-test-SECRET-1234567890"
PAPER = Path("/work/shared/paper/mscrs-sigir25.txt")


def ok_reply(text: str) -> tuple[int, bytes, dict]:
    body = {"id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    return 200, json.dumps(body).encode(), {"Content-Type": "application/json"}


class FakeOpenAI:
    """A real HTTP server on 127.0.0.1 answering ``POST /v1/chat/completions`` as ``script`` says."""

    def __init__(self, script=None):
        self.requests: list[dict] = []
        self.script = script or (lambda n, body: ok_reply("desc of " + body["messages"][-1]["content"][-40:]))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status, payload, headers = outer.script(len(outer.requests), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def prompts(self) -> list[str]:
        return [r["body"]["messages"][-1]["content"] for r in self.requests]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(script=None):
        s = FakeOpenAI(script)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def items(n: int) -> list[ItemInfo]:
    return [ItemInfo(key=f"m{i}", name=f"Movie {i} (200{i})") for i in range(1, n + 1)]


def describer(url: str, sleeps: list | None = None, **kw) -> LLMDescriber:
    sleeps = [] if sleeps is None else sleeps
    kw.setdefault("requests_per_second", 1000.0)
    return LLMDescriber(base_url=url, model="test-model", api_key=KEY, sleep=sleeps.append, **kw)


# -- the prompt --------------------------------------------------------------------------
def test_template_is_figure_3_verbatim():
    t = load_prompt_template()
    assert t.startswith("Please provide a comprehensive and detailed description of the movie '{movie_name}', "
                        "including the following aspects, with each description limited to 30 tokens:")
    for aspect in ("Theme", "Emotion", "Cultural Significance", "Plot Overview"):
        assert f"****{aspect}****:" in t
    if PAPER.is_file():
        lines = PAPER.read_text(encoding="utf-8").splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("Please provide a comprehensive"))
        assert t == "\n".join(lines[start:start + 7])


def test_bad_template_file(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("no placeholder here")
    with pytest.raises(ValueError, match="movie_name"):
        load_prompt_template(p)
    with pytest.raises(FileNotFoundError):
        load_prompt_template(tmp_path / "missing.txt")


# -- the wire format ---------------------------------------------------------------------
def test_normal_answer(server_factory):
    srv = server_factory(lambda n, body: ok_reply(f"  answer {n}  "))
    d = describer(srv.url)
    out = d.describe(items(2))
    assert out == {"m1": "answer 1", "m2": "answer 2"}
    assert isinstance(d, Describer)
    r = srv.requests[0]
    assert r["path"] == "/v1/chat/completions"
    assert r["auth"] == f"Bearer {KEY}"
    assert r["body"]["model"] == "test-model"
    assert r["body"]["temperature"] == 0.0 and "max_tokens" not in r["body"]
    assert r["body"]["messages"] == [{"role": "user",
                                      "content": load_prompt_template().replace("{movie_name}", "Movie 1 (2001)")}]


def test_500_then_success_is_retried_with_backoff(server_factory):
    srv = server_factory(lambda n, body: (500, b'{"error": "boom"}', {}) if n == 1 else ok_reply("fine"))
    sleeps: list[float] = []
    d = describer(srv.url, sleeps, backoff_base=0.5)
    assert d.describe(items(1)) == {"m1": "fine"}
    assert d.requests_made == 2 and len(srv.requests) == 2
    assert 0.5 in sleeps  # backoff_base * 2**0


def test_429_honours_retry_after_and_backoff_doubles(server_factory):
    srv = server_factory(lambda n, body: (429, b"{}", {"Retry-After": "3"}) if n <= 2 else ok_reply("ok"))
    sleeps: list[float] = []
    d = describer(srv.url, sleeps, backoff_base=1.0, backoff_max=10.0)
    assert d.describe(items(1)) == {"m1": "ok"}
    backoffs = [s for s in sleeps if s >= 1.0]
    assert backoffs == [3.0, 3.0]  # max(1*2**0, 3), max(1*2**1, 3)


def test_401_is_not_retried_and_hides_the_key(server_factory):
    srv = server_factory(lambda n, body: (401, json.dumps({"error": f"Incorrect API key {KEY}"}).encode(), {}))
    d = describer(srv.url)
    with pytest.raises(LLMDescriberError) as ei:
        d.describe(items(1))
    msg = str(ei.value)
    assert "401" in msg and "Movie 1 (2001)" in msg and "m1" in msg and "API key" in msg
    assert KEY not in msg and KEY not in repr(d)
    assert ei.value.status == 401 and ei.value.item_key == "m1"
    assert len(srv.requests) == 1


def test_retries_exhausted_on_connection_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    d = describer(f"http://127.0.0.1:{port}/v1", sleeps, max_retries=2, backoff_base=1.0)
    with pytest.raises(LLMDescriberError, match=r"'m1'.*failed after 3 attempts.*connection error"):
        d.describe(items(1))
    assert d.requests_made == 3
    assert [s for s in sleeps if s >= 1.0] == [1.0, 2.0]


@pytest.mark.parametrize("payload, match", [
    (json.dumps({"id": "x", "object": "chat.completion"}).encode(), "no 'choices'"),
    (b"<html>gateway</html>", "not JSON"),
    (json.dumps({"choices": [{"message": {"role": "assistant", "content": ""}}]}).encode(), "no text"),
])
def test_malformed_reply_names_the_item(server_factory, payload, match):
    srv = server_factory(lambda n, body: (200, payload, {"Content-Type": "application/json"}))
    with pytest.raises(LLMDescriberError, match=match) as ei:
        describer(srv.url).describe(items(1))
    assert "'m1'" in str(ei.value) and "Movie 1 (2001)" in str(ei.value)
    assert len(srv.requests) == 1  # a malformed 200 is not retried


def test_rate_limit_spaces_requests(server_factory):
    srv = server_factory()
    sleeps: list[float] = []
    d = describer(srv.url, sleeps, requests_per_second=2.0)
    d.describe(items(3))
    waits = [s for s in sleeps if s > 0]
    assert len(waits) == 2 and all(0 < s <= 0.5 for s in waits)


def test_configuration_from_environment(monkeypatch):
    monkeypatch.setenv("MSCRS_LLM_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("MSCRS_LLM_MODEL", "my-model")
    monkeypatch.setenv("MSCRS_LLM_API_KEY", KEY)
    d = LLMDescriber()
    assert d.url == "http://127.0.0.1:9/v1/chat/completions" and d.model == "my-model"
    assert KEY not in repr(d) and "api_key=set" in repr(d)
    for var in ("MSCRS_LLM_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="MSCRS_LLM_BASE_URL"):
        LLMDescriber()


# -- cache and resume ----------------------------------------------------------------------
def test_second_run_makes_no_request(server_factory, tmp_path):
    srv = server_factory()
    first = describer(srv.url, cache_dir=tmp_path / "cache").describe(items(3))
    assert len(srv.requests) == 3
    again = describer(srv.url, cache_dir=tmp_path / "cache")
    assert again.describe(items(3)) == first
    assert again.requests_made == 0 and len(srv.requests) == 3
    # another model is another fingerprint: nothing is reused
    other = LLMDescriber(base_url=srv.url, model="other-model", cache_dir=tmp_path / "cache", requests_per_second=1000)
    other.describe(items(1))
    assert other.requests_made == 1


def test_interrupted_run_resumes(server_factory, tmp_path):
    def fail_on_third(n, body):
        if "Movie 3" in body["messages"][-1]["content"]:
            return 400, b'{"error": "bad request"}', {}
        return ok_reply("text for " + body["messages"][-1]["content"].split("'")[1])

    srv = server_factory(fail_on_third)
    with pytest.raises(LLMDescriberError, match="Movie 3"):
        describer(srv.url, cache_dir=tmp_path / "c").describe(items(4))
    assert len(list((tmp_path / "c").glob("*.json"))) == 2  # items 1-2 persisted, no temp files left
    assert not list((tmp_path / "c").glob(".*"))

    srv2 = server_factory()
    d = describer(srv2.url, cache_dir=tmp_path / "c")
    out = d.describe(items(4))
    assert [p.split("'")[1] for p in srv2.prompts()] == ["Movie 3 (2003)", "Movie 4 (2004)"]
    assert out["m1"] == "text for Movie 1 (2001)" and out["m2"] == "text for Movie 2 (2002)"


def test_cache_handles_unsafe_keys_and_corrupt_entries(server_factory, tmp_path):
    srv = server_factory(lambda n, body: ok_reply(f"v{n}"))
    uri_item = [ItemInfo(key="<http://dbpedia.org/resource/The_Shining_(film)>", name="The Shining (film)")]
    d = describer(srv.url, cache_dir=tmp_path / "c")
    assert d.describe(uri_item) == {uri_item[0].key: "v1"}
    (entry,) = list((tmp_path / "c").glob("*.json"))
    assert entry.name.startswith("h_")
    entry.write_text("{truncated")
    assert describer(srv.url, cache_dir=tmp_path / "c").describe(uri_item) == {uri_item[0].key: "v2"}


def test_duplicate_keys_rejected():
    with pytest.raises(ValueError, match="duplicate item key"):
        OfflineDescriber().describe([ItemInfo("a", "A"), ItemInfo("a", "B")])


# -- offline descriptions ------------------------------------------------------------------
def test_offline_description_states_only_the_facts():
    it = ItemInfo(key="1", name="Alien (1979)", facts={
        "genre": ("horror", "sci-fi"), "director": ("Ridley Scott",), "writer": ("Dan O'Bannon", "Ronald Shusett"),
        "star": ("Sigourney Weaver", "Tom Skerritt"), "plot": ("The crew of a spaceship meets a deadly creature.",)})
    text = OfflineDescriber().describe([it])["1"]
    assert text == (
        "Theme: Alien (1979) is recorded under the genres horror and sci-fi.\n"
        "Emotion: Its genres are conventionally associated with fear, dread, awe and curiosity.\n"
        "Cultural Significance: Credits of Alien (1979): directed by Ridley Scott; written by Dan O'Bannon and "
        "Ronald Shusett; starring Sigourney Weaver and Tom Skerritt.\n"
        "Plot Overview: The crew of a spaceship meets a deadly creature.")


def test_offline_description_without_facts_says_so():
    text = OfflineDescriber().describe_one(ItemInfo(key=5, name="Obscure Film"))
    assert "no genre for Obscure Film" in text and "no director, writer or cast" in text
    assert text.endswith("Plot Overview: No plot summary is available in the data.")
    assert [line.split(":")[0] for line in text.splitlines()] == ["Theme", "Emotion", "Cultural Significance",
                                                                  "Plot Overview"]


def test_offline_kg_facts_fill_the_plot_overview_and_cap_lists():
    it = ItemInfo(key=7, name="Fargo (1996 film)", facts={
        "star": tuple(f"Actor {i}" for i in range(7)), "producer": ("Coen brothers",),
        "distributor": ("Gramercy Pictures",)})
    text = OfflineDescriber(max_per_role=3).describe_one(it)
    assert "starring Actor 0, Actor 1, Actor 2 and 4 others." in text
    assert text.endswith("Plot Overview: No plot summary is available; recorded production facts: "
                         "produced by Coen brothers; distributed by Gramercy Pictures.")


def test_genre_emotions_table():
    assert genre_emotions(["Black comedy", "Horror fiction"]) == ["amusement", "joy", "fear", "dread"]
    assert genre_emotions(["Science fiction", "war", "Warner"]) == ["awe", "curiosity", "grief", "tension"]
    assert genre_emotions(["short", "news"]) == []


def test_readable_entity_name():
    assert readable_entity_name("<http://dbpedia.org/resource/The_Shining_(film)>") == "The Shining (film)"
    assert readable_entity_name("<http://dbpedia.org/resource/George_%22Gabby%22_Hayes__PersonFunction__1>") \
        == 'George "Gabby" Hayes'
    assert readable_entity_name("The Shining (film)") == "The Shining (film)"


def _write_metadata(root: Path, obj) -> Path:
    (root / "redial").mkdir(parents=True)
    (root / "redial" / "movie_metadata.json").write_text(json.dumps(obj))
    return root


def test_describe_redial_items(tmp_path):
    root = _write_metadata(tmp_path, {
        "111": {"name": "Heat (1995)", "genre": ["crime", "drama"], "plot": "A detective hunts a thief.",
                "director": ["Michael Mann"], "writer": [], "star": ["Al Pacino"], "imdb_id": "tt0113277"},
        "222": {"name": "Untold (2000)", "genre": [], "plot": "", "director": [], "writer": [], "star": [],
                "imdb_id": "tt0"}})
    out = describe_redial_items(root, check=False)
    assert list(out) == ["111", "222"]
    assert out["111"] == ("Theme: Heat (1995) is recorded under the genres crime and drama.\n"
                          "Emotion: Its genres are conventionally associated with tension and empathy.\n"
                          "Cultural Significance: Credits of Heat (1995): directed by Michael Mann; starring Al Pacino.\n"
                          "Plot Overview: A detective hunts a thief.")
    assert "No plot summary is available in the data." in out["222"]
    infos = item_infos_from_redial_metadata(root, movie_ids=["222"], check=False)
    assert [i.key for i in infos] == ["222"]
    with pytest.raises(DataError, match="'999' has no record"):
        item_infos_from_redial_metadata(root, movie_ids=["999"], check=False)


def test_redial_metadata_errors(tmp_path):
    with pytest.raises(DataError, match="movie_metadata.json"):
        describe_redial_items(tmp_path, check=False)
    root = _write_metadata(tmp_path / "x", {"1": {"name": "A", "genre": "drama", "star": [3]}})
    with pytest.raises(DataError, match=r"movie '1': 'star' must be a list of strings"):
        describe_redial_items(root, check=False)


def _tiny_dataset(relation_names):
    uris = ["<http://dbpedia.org/resource/The_Shining_(film)>", "<http://dbpedia.org/resource/Jack_Nicholson>",
            "<http://dbpedia.org/resource/Stanley_Kubrick>", "<http://dbpedia.org/resource/Horror_film>",
            "<http://dbpedia.org/resource/Shelley_Duvall__PersonFunction__1>", "<http://dbpedia.org/resource/Actor>",
            "<http://dbpedia.org/resource/Other_film>"]
    # relations: 0 starring, 1 director, 2 genre, 3 self_loop, 4 occupation
    head = np.array([0, 0, 0, 0, 0, 0, 1, 6], dtype=np.int64)
    rel = np.array([3, 0, 0, 1, 2, 0, 4, 3], dtype=np.int64)
    tail = np.array([0, 1, 4, 2, 3, 1, 5, 6], dtype=np.int64)
    kg = KnowledgeGraph(num_entities=7, head=head, relation=rel, tail=tail, relation_names=relation_names)
    return CRSDataset(name="tiny", splits={}, entity2id={u: i for i, u in enumerate(uris)}, item_ids=[0, 6], kg=kg)


def test_item_infos_from_kg():
    ds = _tiny_dataset(["starring", "director", "genre", "self loop", "occupation"])
    shining, other = item_infos_from_kg(ds)
    assert shining.key == 0 and shining.name == "The Shining (film)"
    assert dict(shining.facts) == {"star": ("Jack Nicholson", "Shelley Duvall"), "director": ("Stanley Kubrick",),
                                   "genre": ("Horror film",)}
    assert other.name == "Other film" and dict(other.facts) == {}
    text = OfflineDescriber().describe([shining])[0]
    assert "directed by Stanley Kubrick; starring Jack Nicholson and Shelley Duvall" in text
    assert "Emotion: Its genres are conventionally associated with fear and dread." in text


def test_item_infos_from_kg_accepts_uri_relation_names_and_needs_names():
    ds = _tiny_dataset(["<http://dbpedia.org/ontology/starring>", "<http://dbpedia.org/ontology/director>",
                        "<http://dbpedia.org/ontology/genre>", "self_loop", "<http://dbpedia.org/ontology/occupation>"])
    assert set(item_infos_from_kg(ds)[0].facts) == {"star", "director", "genre"}
    with pytest.raises(ValueError, match="no relation names"):
        item_infos_from_kg(_tiny_dataset(None))


@pytest.mark.skipif(not Path("/work/shared/data/inspired/dbpedia_subkg.json").is_file(), reason="real data absent")
def test_real_inspired_items_have_facts():
    from mscrs_core.data.inspired import load_inspired

    ds = load_inspired("/work/shared/data")
    infos = item_infos_from_kg(ds)
    assert len(infos) == ds.num_items == 1472
    with_facts = sum(1 for i in infos if i.facts)
    assert with_facts > 1300
    fargo = next(i for i in infos if i.name == "Fargo (1996 film)")
    assert "Frances McDormand" in fargo.facts["star"] and fargo.facts["director"] == ("Coen brothers",)
