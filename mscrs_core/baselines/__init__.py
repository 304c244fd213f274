"""Baselines of Table 2 run in the same harness: Popularity, a text-only classifier ("BERT" row) and the
untrained graph scorer (what the semantic graphs know without a language model); and reference rows
beyond the paper that keep Table 2 honest: copying the context's items, zero-shot text matching, and a
trained KBRD-like entity-mean scorer without a language model. Table 3's reference rows (responses chosen, not
generated) are in :mod:`.response_references`."""
from .copy_context import copy_context_scores
from .entity_mean import EntityMeanConfig, EntityMeanScorer, train_entity_mean
from .graph_scorer import graph_scores
from .popularity import popularity_scores
from .response_references import REFERENCE_MODELS, frequent_response, nearest_responses, reference_responses
from .text_classifier import TextClassifierConfig, cached_contexts, newest_tokens_text, train_text_classifier
from .zero_shot_text import ZeroShotTextConfig, item_texts_for, zero_shot_text_scores

__all__ = ["graph_scores", "popularity_scores", "TextClassifierConfig", "train_text_classifier",
           "cached_contexts", "newest_tokens_text", "copy_context_scores", "ZeroShotTextConfig",
           "zero_shot_text_scores", "item_texts_for", "EntityMeanConfig", "EntityMeanScorer",
           "train_entity_mean", "REFERENCE_MODELS", "frequent_response", "nearest_responses",
           "reference_responses"]
