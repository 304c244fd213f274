"""Prompt-learning recommender of MSCRS (paper Sec. 4.3, Eq. 17-24) and its backbones."""
from mscrs_core.models.backbone import OFFLINE_SHORTCUTS, load_backbone
from mscrs_core.models.collate import RecCollator
from mscrs_core.models.prompt_encoder import PromptEncoder, assemble_inputs
from mscrs_core.models.recommender import MSCRSRecommender, RecOutput
from mscrs_core.models.tiny_dialogpt import TinyDialoGPTConfig, pretrain_tiny_dialogpt

__all__ = [
    "OFFLINE_SHORTCUTS", "load_backbone", "RecCollator", "PromptEncoder", "assemble_inputs", "MSCRSRecommender",
    "RecOutput", "TinyDialoGPTConfig", "pretrain_tiny_dialogpt",
]
