"""Baselines of Table 2 run in the same harness: Popularity, a text-only classifier ("BERT" row) and the
untrained graph scorer (what the semantic graphs know without a language model)."""
from .graph_scorer import graph_scores
from .popularity import popularity_scores
from .text_classifier import TextClassifierConfig, train_text_classifier

__all__ = ["graph_scores", "popularity_scores", "TextClassifierConfig", "train_text_classifier"]
