"""Run configurations compose the configs of the parts they run, and keep the identity of finished runs."""
from __future__ import annotations

import dataclasses

import pytest

from mscrs_core.experiments.conversation import ConversationRunConfig
from mscrs_core.experiments.recommendation import RecRunConfig
from mscrs_core.models.conversation import ConversationConfig
from mscrs_core.models.recommender import RecommenderConfig

#: the digests of the default runs, whose folders hold the book's finished results: a refactor that changes them
#: makes every chapter recompute (hours), so they are pinned; change them only with the runs' configuration
#: (recommendation: 31268a2caf7c until T_s from the text encoder became the run's default, chapter 3; b0730a43cae5
#: until the backbone's title readout did;
#: conversation: 6e0cb44b2202 until Table 3 was scored on every test turn, max_test_samples=0; 0e44ca1be700 until
#: the prompt trained on length-grouped batches, group_by_length=16)
DEFAULT_DIGESTS = {RecRunConfig: "6ab6eda5018f", ConversationRunConfig: "e1d5b6003c7e"}


@pytest.fixture(autouse=True)
def native_bfloat16(monkeypatch):
    """The pinned digests are those of a processor with native bfloat16, where the book's runs were recorded
    (``backbone_dtype="auto"`` resolves to bfloat16 there and to float32 elsewhere, another run)."""
    from mscrs_core.models import backbone

    monkeypatch.setattr(backbone, "native_bf16", lambda: True)


@pytest.mark.parametrize("cls", [RecRunConfig, ConversationRunConfig])
def test_default_run_digests_are_stable(cls):
    assert cls().digest() == DEFAULT_DIGESTS[cls]


def test_a_run_recorded_before_max_test_samples_keeps_its_digest():
    """Runs scored on max_eval_samples test turns were recorded without the field: read back, they are the
    legacy value (None) and keep their folder name; the new default (every test turn) is another run."""
    old = {k: v for k, v in ConversationRunConfig().flat().items()
           if k not in ("max_test_samples", "group_by_length")}
    back = ConversationRunConfig.from_record(old)
    assert back.max_test_samples is None and back.digest() == "6e0cb44b2202"
    assert ConversationRunConfig.of(max_test_samples=None, group_by_length=0).digest() == "6e0cb44b2202"


def test_a_run_recorded_before_the_title_readout_keeps_its_digest():
    """Recommendation runs recorded without title_readout read back as the legacy value (off) and keep their folder
    name; the new default (on) is another run, and the cue enters the digest only when changed."""
    old = {k: v for k, v in RecRunConfig().flat().items() if k not in ("title_readout", "title_cue")}
    back = RecRunConfig.from_record(old)
    assert back.title_readout is False and back.digest() == "b0730a43cae5"
    assert "title_cue" not in RecRunConfig().identity()
    assert RecRunConfig.of(title_cue="System: watch ").digest() != RecRunConfig().digest()


def test_a_run_recorded_before_length_grouped_batches_keeps_its_digest():
    """Runs trained on plainly shuffled batches were recorded without group_by_length: read back they are the
    legacy value (0) and keep their folder name; the new default (16-batch windows) is another run."""
    old = {k: v for k, v in ConversationRunConfig().flat().items() if k != "group_by_length"}
    back = ConversationRunConfig.from_record(old)
    assert back.group_by_length == 0 and back.digest() == "0e44ca1be700"
    assert ConversationRunConfig().group_by_length == 16 and ConversationRunConfig().digest() != back.digest()


def test_the_plain_backbone_row_ignores_the_prompts_training_schedule():
    # chapter 7's plain row trains nothing: two epochs for the prompt must not recompute it (same folder name)
    plain = ConversationRunConfig.of(model="backbone")
    assert ConversationRunConfig.of(model="backbone", epochs=2, lr=3e-3).name() == plain.name()
    assert ConversationRunConfig.of(model="backbone", epochs=2).epochs == 1
    assert ConversationRunConfig.of(epochs=2).name() != ConversationRunConfig().name()  # the prompt's run: another
    assert ConversationRunConfig.of(model="backbone", max_new_tokens=20).name() != plain.name()  # decoding counts
    # nor how a prompt it does not have would enter the backbone (the default profile gives chapter 6 the layer
    # prompt, the smoke and full profiles do not: one plain row and one set of reference rows for all of them)
    for model in ("backbone", "frequent_response", "nearest_response"):
        layers = ConversationRunConfig.of(model=model, prompt_injection="layers", lr=1e-3, epochs=2)
        assert layers.prompt_injection == "inputs"
        assert layers.name() == ConversationRunConfig.of(model=model).name()
    assert ConversationRunConfig.of(prompt_injection="layers").name() != ConversationRunConfig().name()


def test_the_model_section_is_the_models_own_config():
    cfg = RecRunConfig()
    # every model default is written once, in RecommenderConfig: the run reads it from there, except the fields
    # the run's recipe sets (run_recommender_config: T_s from the sentence encoder and the backbone's title readout,
    # chosen on validation)
    run_choice = {"context_encoder": "text_encoder", "text_skip": True, "title_readout": True}
    assert isinstance(cfg.recommender, RecommenderConfig)
    assert cfg.recommender == dataclasses.replace(RecommenderConfig(), **run_choice)
    for f in dataclasses.fields(RecommenderConfig):
        assert getattr(cfg, f.name) == run_choice.get(f.name, getattr(RecommenderConfig(), f.name))
    assert isinstance(ConversationRunConfig().conversation, ConversationConfig)


@pytest.mark.parametrize("cls", [RecRunConfig, ConversationRunConfig])
def test_flat_names_round_trip(cls):
    cfg = cls()
    flat = cfg.flat()
    assert list(flat) == cls.field_names() and len(set(flat)) == len(flat)
    assert cls.of(**flat) == cfg and cls.from_params(flat) == cfg and cls.from_record(flat) == cfg
    for name, value in flat.items():  # flat read access reaches into the sections
        assert getattr(cfg, name) == value


def test_of_routes_each_name_to_its_section():
    cfg = RecRunConfig.of(model="unicrs", k=20, n_task_prompt=20, lr=3e-4, max_train_samples=64, backbone="x")
    assert (cfg.graphs.k, cfg.recommender.n_task_prompt, cfg.training.lr, cfg.data.max_train_samples,
            cfg.language_model.backbone) == (20, 20, 3e-4, 64, "x")
    assert cfg.replace(k=5).graphs.k == 5 and cfg.replace(k=5).recommender.n_task_prompt == 20
    with pytest.raises(ValueError, match="unknown RecRunConfig fields"):
        RecRunConfig.of(n_task_prompts=20)
    with pytest.raises(AttributeError):
        RecRunConfig().no_such_field  # noqa: B018
    with pytest.raises(ValueError, match="lambda_"):  # each section checks its own values
        RecRunConfig.of(lambda_=2.0)
    with pytest.raises(ValueError, match="head"):
        RecRunConfig.of(head="mlp")


def test_fields_added_later_enter_the_digest_only_away_from_their_default():
    base = RecRunConfig()
    assert "tau" not in base.identity() and "n_task_prompt" in base.identity()
    assert RecRunConfig.of(tau=0.1).digest() != base.digest()
    assert RecRunConfig.of(n_task_prompt=20).digest() != base.digest()
    # a record written before the field existed reads back as what its run did: the default, or the legacy value
    # of a field whose default changed since (DIGEST_LEGACY_VALUES)
    old = {k: v for k, v in base.flat().items() if k not in RecRunConfig.DIGEST_SINCE_DEFAULTS}
    then = RecRunConfig.of(**RecRunConfig.DIGEST_LEGACY_VALUES)
    assert RecRunConfig.from_record(old) == then and then != base


def test_a_changed_default_gets_a_new_digest_and_the_old_runs_keep_theirs():
    """T_s from the text encoder became the run's default after runs without it were recorded: the new default
    must not share their folders (they would be loaded as its results), and the old configuration keeps its
    digest."""
    legacy = RecRunConfig.of(context_encoder="backbone_embeddings", text_skip=False, title_readout=False)
    assert legacy.digest() == "31268a2caf7c"  # the runs recorded before the change
    assert RecRunConfig().digest() != legacy.digest()
    assert "context_encoder" in RecRunConfig().identity() and "context_encoder" not in legacy.identity()


def test_a_section_starts_from_the_runs_defaults_not_the_section_classs():
    # ConversationConfig's own order is Eq. (28)'s prefix; the run's default puts the prompt after the context.
    # Setting one field of the section must keep the run's other defaults (a sweep point names one or two fields)
    assert ConversationConfig().prompt_position == "prefix"
    cfg = ConversationRunConfig.of(mapping_k=5)
    assert (cfg.prompt_position, cfg.max_response_length, cfg.mapping_k) == ("suffix", 48, 5)
    assert ConversationRunConfig.of(dataset="inspired") == ConversationRunConfig()
    assert ConversationRunConfig.from_params({"seed": 0, "tau": 0.07}).digest() == ConversationRunConfig().digest()


def test_conversation_run_resolves_its_decoding():
    cfg = ConversationRunConfig()
    assert cfg.decoding.generation_config(17).min_new_tokens == 17  # None: the training responses' median
    assert ConversationRunConfig.of(min_new_tokens=5).decoding.generation_config(17).min_new_tokens == 5
    assert ConversationRunConfig.of(max_new_tokens=8).decoding.generation_config(17).min_new_tokens == 8
    train = cfg.training.trainer("/tmp/x", seed=3)
    assert (train.epochs, train.batch_size, train.lr, train.seed) == (1, 16, 1e-2, 3)


def test_no_output_folder_means_none_not_a_folder_named_none():
    """trainer(None) / stage(..., None) keep the weights in memory; str(None) once wrote a folder "None/"."""
    assert ConversationRunConfig().training.trainer(None, 0).output_dir is None
    assert RecRunConfig().training.stage("rec", None, seed=0, max_length=64, progress=False).output_dir is None
    assert RecRunConfig().training.stage("rec", "runs/x", seed=0, max_length=64, progress=False).output_dir == "runs/x"
