from mscrs_core.data.samples import MOVIE_PLACEHOLDER, conversation_samples, mask_movies, pretrain_samples, rec_samples
from mscrs_core.data.schema import RECOMMENDER, SEEKER, Dialog, Turn
from mscrs_core.data.synthetic import make_synthetic

D = Dialog("d1", [
    Turn(SEEKER, "I like horror with Jack Nicholson", entities=(10, 11)),
    Turn(RECOMMENDER, "Have you seen The Shining (1980)?", items=(100,)),
    Turn(SEEKER, "yes! and Misery (1990)", items=(101,)),
    Turn(RECOMMENDER, "Then try Carrie (1976) or It (2017)", entities=(12,), items=(102, 103)),
])


def test_pretrain_samples_one_per_entity_with_response():
    s = pretrain_samples([D])
    assert [(x.turn_index, x.target) for x in s] == [(0, 10), (0, 11), (1, 100), (2, 101), (3, 12), (3, 102), (3, 103)]
    assert s[0].context == () and s[0].response == "I like horror with Jack Nicholson"
    assert s[-1].context_entities == (10, 11, 100, 101)


def test_rec_samples_each_gold_item_its_own_sample():
    s = rec_samples([D])
    assert [(x.turn_index, x.target) for x in s] == [(1, 100), (3, 102), (3, 103)]
    assert s[0].context == ((SEEKER, "I like horror with Jack Nicholson"),)
    assert s[1].context_entities == (10, 11, 100, 101)
    assert s[1].mentioned_items == (100, 101)
    assert rec_samples([D], item_ids=[100, 102]) == [s[0], s[1]]


def test_conversation_samples_mask_movies():
    names = {100: ["The Shining (1980)"], 102: ["Carrie (1976)"], 103: ["It (2017)"]}
    s = conversation_samples([D], movie_names=names)
    assert [x.turn_index for x in s] == [1, 3]
    assert s[0].response == f"Have you seen {MOVIE_PLACEHOLDER}?"
    assert s[1].response == f"Then try {MOVIE_PLACEHOLDER} or {MOVIE_PLACEHOLDER}"
    assert s[1].response_items == (102, 103)


def test_mask_longest_name_first():
    assert mask_movies("Alien and Aliens", ["Alien", "Aliens"]) == "<movie> and <movie>"


def test_synthetic_planted_structure():
    ds = make_synthetic(seed=1)
    cl = ds.report["cluster_of"]
    s = rec_samples(ds.dialogs("train"), ds.item_ids)
    assert len(s) == 120
    # the gold item shares its cluster with every context entity
    assert all(all(cl[e] == cl[x.target] for e in x.context_entities) for x in s)
    assert make_synthetic(seed=1).dialogs("test")[0] == ds.dialogs("test")[0]  # deterministic


def test_display_title_drops_dbpedias_disambiguation_only():
    from mscrs_core.data.samples import display_title

    assert display_title("Split (2016 American film)") == "Split"
    assert display_title("Doctor Sleep (2019 film)") == "Doctor Sleep"
    assert display_title("Hereditary (film)") == "Hereditary"
    assert display_title("Us (2019)") == "Us"
    assert display_title("Avengers: Endgame") == "Avengers: Endgame"
    assert display_title("Mission: Impossible (film series)") == "Mission: Impossible (film series)"
