"""Table 3's reference rows (mscrs_core.baselines.response_references) and their conversation runs."""
import pytest

from mscrs_core.baselines import REFERENCE_MODELS, frequent_response, nearest_responses, reference_responses
from mscrs_core.data.samples import Sample
from mscrs_core.models.context_mapping import HashingTextEmbedder


def _sample(dialog: str, turn: int, seeker: str, response: str) -> Sample:
    return Sample(dialog, turn, (("seeker", seeker),), (), response)


TRAIN = [_sample("a", 1, "I love scary horror films with ghosts", "Have you seen <movie>? It is terrifying."),
         _sample("b", 1, "something funny please, a comedy", "<movie> is a hilarious comedy."),
         _sample("c", 1, "what about a romance", "What kind of movies do you like?"),
         _sample("d", 1, "hello there", "What kind of movies do you like?")]


def test_nearest_response_is_the_most_similar_training_contexts():
    test = [_sample("t", 1, "a comedy, something funny", ""), _sample("t", 2, "horror films with ghosts", "")]
    got = nearest_responses(TRAIN, test, HashingTextEmbedder(256))
    assert got == ["<movie> is a hilarious comedy.", "Have you seen <movie>? It is terrifying."]
    assert nearest_responses(TRAIN, [], HashingTextEmbedder(256)) == []
    with pytest.raises(ValueError, match="no training samples"):
        nearest_responses([], test, HashingTextEmbedder(256))


def test_frequent_and_shuffled_responses():
    test = [_sample("t", i, "anything", "") for i in range(50)]
    assert frequent_response(TRAIN) == "What kind of movies do you like?"
    assert reference_responses("frequent_response", TRAIN, test) == ["What kind of movies do you like?"] * 50
    shuffled = reference_responses("shuffled_response", TRAIN, test, seed=3)
    assert shuffled == reference_responses("shuffled_response", TRAIN, test, seed=3)  # seeded
    assert shuffled != reference_responses("shuffled_response", TRAIN, test, seed=4)
    assert set(shuffled) == {s.response for s in TRAIN}  # 50 draws from 4 responses (3 distinct) see them all
    with pytest.raises(ValueError, match="embedder"):
        reference_responses("nearest_response", TRAIN, test)
    with pytest.raises(ValueError, match="expected one of"):
        reference_responses("echo", TRAIN, test)


def test_reference_runs_load_no_language_model_and_score_like_the_generators(tmp_path, monkeypatch):
    """On the real INSPIRED data: a reference run writes Table 3's metrics, records no backbone, and its identity
    ignores the prompt's training schedule (it trains nothing)."""
    from mscrs_core.experiments import conversation
    from mscrs_core.experiments.conversation import ConversationRunConfig, run_conversation

    def no_backbone(*a, **k):
        raise AssertionError("a reference row loaded a language model")

    monkeypatch.setattr(conversation, "load_conversation_backbone", no_backbone)
    monkeypatch.setattr("mscrs_core.experiments.fingerprint.backbone_part",
                        lambda cfg, *a, **k: None if cfg.model in REFERENCE_MODELS else no_backbone())
    sizes = dict(max_train_samples=64, max_eval_samples=8, max_test_samples=16, text_embedder="hashing:64")
    results = {}
    for model in REFERENCE_MODELS:
        cfg = ConversationRunConfig.of(model=model, **sizes)
        assert cfg.shared_caches() == () and cfg.digest() == ConversationRunConfig.of(model=model, epochs=5,
                                                                                       **sizes).digest()
        results[model] = run_conversation(cfg, tmp_path, cache_dir=tmp_path / "cache")
    frequent = results["frequent_response"]
    assert frequent["backbone"] is None and frequent["samples"]["test"] == 16
    assert frequent["test"]["top_response_share"] == 1.0 and frequent["test"]["count"] == 16
    assert results["shuffled_response"]["test"]["dist@2"] > frequent["test"]["dist@2"]
    for r in results.values():
        assert 0.0 <= r["test"]["bleu@2"] <= 1.0 and not r["reused"]
    again = run_conversation(ConversationRunConfig.of(model="nearest_response", **sizes), tmp_path,
                             cache_dir=tmp_path / "cache")
    assert again["reused"] and again["test"] == results["nearest_response"]["test"]
