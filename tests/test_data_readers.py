"""Both readers on the real files (../shared/data or $MSCRS_DATA)."""
from mscrs_core.data.schema import RECOMMENDER, SEEKER


def test_inspired_counts(inspired):
    assert [len(inspired.dialogs(s)) for s in ("train", "valid", "test")] == [801, 99, 99]
    assert sum(len(d) for d in inspired.dialogs("train")) == 16982
    assert inspired.num_entities == 17320
    assert inspired.num_items == 1472
    assert inspired.kg.num_edges == 38903
    assert inspired.kg.relation_names[0] == "starring" and inspired.kg.relation_names[12] == "self loop"


def test_inspired_first_dialog(inspired):
    t = inspired.dialogs("train")[0].turns
    assert t[0].role == RECOMMENDER and t[1].role == SEEKER
    assert [inspired.name_of(e) for e in t[1].entities] == ["Action film", "Mystery fiction"]
    assert [inspired.name_of(e) for e in t[2].items] == ["Knives Out"]
    assert set(t[2].items) <= set(inspired.item_ids)


def test_redial_counts(redial):
    assert [len(redial.dialogs(s)) for s in ("train", "valid", "test")] == [1369, 901, 1342]
    assert redial.num_entities == 64362
    assert redial.num_items == 6924
    assert redial.kg.num_edges == 165696
    per = redial.report["per_split"]
    assert per["test"]["messages"] == 23952
    # every @mention of the test split has a movie entity (movie_entity_ids covers all 6,924 movies)
    assert per["test"]["movie_mentions"] == 8521
    assert per["test"].get("movie_mentions_unlinked", 0) == 0


def test_redial_turns_are_merged_and_movies_named(redial):
    d = redial.dialogs("test")[0]
    roles = [t.role for t in d.turns]
    assert all(a != b for a, b in zip(roles, roles[1:])), "consecutive turns of one speaker must be merged"
    assert d.turns[0].role == SEEKER
    assert "@" not in d.turns[0].text and "Super Troopers" in d.turns[0].text
    assert [redial.name_of(e) for e in d.turns[0].items] == ["Super Troopers"]


def test_redial_entity_linking_finds_people_and_genres(redial):
    linked = {redial.name_of(e) for t in redial.iter_turns("train") for e in t.entities}
    assert len(linked) > 300
    items = set(redial.item_ids)
    assert not any(e in items for t in redial.iter_turns("train") for e in t.entities)
