"""Multi-modal item features (paper section 4.1): descriptions (Eq. 2), text (Eq. 3) and image (Eq. 4-5) features.

- :class:`LLMDescriber` — the paper's route: Figure 3 prompt to any OpenAI-compatible endpoint.
- :class:`OfflineDescriber` — the default here: a templated description from the data's metadata (not an LLM).
- :class:`TextEncoder` — AvgPool over a Hugging Face encoder (RoBERTa in the paper, MiniLM offline).
- :class:`ImageEncoder` — a Hugging Face vision encoder (ViT in the paper) averaged over an item's images.
- :func:`load_id_embeddings` / :func:`load_collaborative_edges` — the authors' released files.
"""
from .authors_files import load_collaborative_edges, load_id_embeddings, save_id_embeddings
from .describe_llm import (ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, LLMDescriber, LLMDescriberError,
                           load_prompt_template)
from .describe_offline import (ASPECTS, GENRE_EMOTIONS, OfflineDescriber, describe_redial_items, genre_emotions,
                               item_infos_from_kg, item_infos_from_redial_metadata, readable_entity_name)
from .describer_cache import DescriptionCache, Describer, ItemInfo
from .image_encoder import (IMAGE_EXTENSIONS, PAPER_IMAGE_ENCODER, ImageEncoder, ImageFeatures, ImageProblem,
                            list_item_images, load_image)
from .text_encoder import (PAPER_TEXT_ENCODER, FeatureTable, TextEncoder, default_text_encoder_path,
                           inputs_sha256, load_feature_table, mean_pool, save_feature_table)

__all__ = [
    "ASPECTS", "ENV_API_KEY", "ENV_BASE_URL", "ENV_MODEL", "GENRE_EMOTIONS", "IMAGE_EXTENSIONS",
    "PAPER_IMAGE_ENCODER", "PAPER_TEXT_ENCODER",
    "Describer", "DescriptionCache", "FeatureTable", "ImageEncoder", "ImageFeatures", "ImageProblem", "ItemInfo",
    "LLMDescriber", "LLMDescriberError", "OfflineDescriber", "TextEncoder",
    "default_text_encoder_path", "describe_redial_items", "genre_emotions", "inputs_sha256", "item_infos_from_kg",
    "item_infos_from_redial_metadata", "list_item_images", "load_collaborative_edges", "load_feature_table",
    "load_id_embeddings", "load_image", "load_prompt_template", "mean_pool", "readable_entity_name",
    "save_feature_table", "save_id_embeddings",
]
