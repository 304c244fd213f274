"""Baselines of Table 2 run in the same harness: Popularity and a text-only classifier ("BERT" row)."""
from .popularity import popularity_scores
from .text_classifier import TextClassifierConfig, train_text_classifier

__all__ = ["popularity_scores", "TextClassifierConfig", "train_text_classifier"]
