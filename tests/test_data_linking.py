import numpy as np

from mscrs_core.data.linking import EntityLinker

VOCAB = {
    "<http://dbpedia.org/resource/Quentin_Tarantino>": 0,
    "<http://dbpedia.org/resource/Horror_film>": 1,
    "<http://dbpedia.org/resource/Tom_Hanks>": 2,
    "<http://dbpedia.org/resource/Tom>": 3,
    "<http://dbpedia.org/resource/Love>": 4,
    "<http://dbpedia.org/resource/Pulp_Fiction>": 5,
    "<http://dbpedia.org/resource/Hanks_(surname)>": 6,
    "<http://dbpedia.org/resource/Comedy_(drama)>": 7,
    "<http://dbpedia.org/resource/Comedy>": 8,
}


def linker(**kw):
    return EntityLinker.from_vocabulary(VOCAB, **kw)


def test_longest_match_wins():
    r = linker().link("I love Tom Hanks movies")
    assert r.entities == [2]  # "Tom Hanks", not "Tom" then "Hanks"
    assert r.spans == [(2, 4, 2)]


def test_genre_alias_and_case_rules():
    assert linker().link("any good horror ones?").entities == [1]
    assert linker().link("quentin tarantino is great").entities == [0]  # multi-word: any case
    assert linker().link("I saw tom yesterday").entities == []  # single lower-case word: not a proper noun
    assert linker().link("I saw Tom yesterday").entities == [3]
    assert linker().link("Love it").entities == []  # common word, never a single-token entity


def test_excluded_entities_and_ambiguity_by_degree():
    assert linker(exclude={5}).link("Pulp Fiction rocks").entities == []
    # "Comedy" names entities 7 (disambiguated) and 8: the better-connected one wins
    deg = np.zeros(9)
    deg[7] = 5
    assert linker(degree=deg).link("I want a Comedy").entities == [7]
    assert linker().link("I want a Comedy").entities == [7]  # tie: lowest id


def test_cased_entities_link_only_where_the_text_capitalises_them():
    films = {"<http://dbpedia.org/resource/Scary_Movie>": 0, "<http://dbpedia.org/resource/Get_Out>": 1,
             "<http://dbpedia.org/resource/Tom_Hanks>": 2, "<http://dbpedia.org/resource/Get_out_(song)>": 3}
    plain = EntityLinker.from_vocabulary(films)
    assert plain.link("I want a scary movie tonight").entities == [0]  # the everyday phrase taken for the title
    titles = EntityLinker.from_vocabulary(films, cased={0, 1})
    assert titles.link("I want a scary movie tonight").entities == []
    assert titles.link("Have you seen Scary Movie?").entities == [0]
    assert titles.link("I liked Get out a lot").entities == [1]  # one capitalised token is enough
    assert titles.link("tom hanks is great").entities == [2]  # not cased: any case, as before
    # a lower-case span falls back to the name's other, uncased entity
    assert titles.link("I need to get out more").entities == [3]


def test_fiction_genres_answer_to_their_genre_word_where_no_film_page_exists():
    vocab = {"<http://dbpedia.org/resource/Horror_fiction>": 0, "<http://dbpedia.org/resource/Action_film>": 1,
             "<http://dbpedia.org/resource/Action_fiction>": 2, "<http://dbpedia.org/resource/Genre_fiction>": 3,
             "<http://dbpedia.org/resource/Fan_fiction>": 4}
    linker = EntityLinker.from_vocabulary(vocab)
    assert linker.link("I love horror").entities == [0]  # no Horror film here: the fiction page answers
    assert linker.link("any action ones?").entities == [1]  # Action film exists: the film page, not the fiction one
    assert linker.link("what genre? I am a fan").entities == []  # not film genres
    assert linker.link("I love horror fiction").entities == [0]  # the full name as before
