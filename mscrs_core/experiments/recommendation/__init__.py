"""One recommendation run (Table 2, Figures 4a-b and 5), split along its seams: :mod:`.config` (what a run is),
:mod:`.build` (its samples, graphs, backbone and model), :mod:`.run` (train, evaluate, record) and
:mod:`.results` (where records go and how they are read back).

Models (``RecRunConfig.model``):

* ``"mscrs"``: the semantic graph encoder (KG + collaborative + text [+ image] graphs, Eq. 1-16),
  the prompt encoder (Eq. 17-19) and the frozen backbone; pre-training by entity prediction
  (Eq. 21-22), then recommendation training (Eq. 23-24).
* ``"unicrs"``: the same model with every semantic graph switched off (knowledge-graph prompt only),
  i.e. UniCRS inside this harness (also MSCRS "w/o -r").
* ``"popularity"`` and ``"text_classifier"``: the baselines of ``mscrs_core.baselines``.
* ``"graph_scorer"``: no training and no language model; the untrained semantic graph encoder of the
  ``"mscrs"`` configuration (same graph switches, same seed) scoring items by cosine similarity to the mean
  context entity (``mscrs_core.baselines.graph_scorer``): what the graphs know by themselves.
* References beyond the paper, which keep Table 2 honest (``mscrs_core.baselines``): ``"copy_context"`` (the
  items already mentioned in the dialog, most recent first, then popularity), ``"zero_shot_text"`` (text-encoder
  similarity of context and item text plus a popularity prior weighted on validation) and ``"entity_mean"``
  (a trained KBRD-like scorer: the mean of the context's entity rows of the same graph encoder as ``"mscrs"``
  (``use_*`` switch the graphs), cosine head with item bias, no language model).
"""
from .build import (build_recommender, context_bank_for, graph_settings, lm_free_graph_encoder, load_backbone_for,
                    rec_splits, subsample, tiny_dialogpt_for)
from .config import (MODELS, PROMPT_MODELS, BackboneConfig, RecDataConfig, RecGraphConfig, RecRunConfig,
                     RecTrainingConfig)
from .results import default_results_dir, load_result
from .run import lm_stage_bar, lm_stage_wins, run_recommendation

__all__ = ["MODELS", "PROMPT_MODELS", "BackboneConfig", "RecDataConfig", "RecGraphConfig", "RecRunConfig",
           "RecTrainingConfig", "build_recommender", "context_bank_for", "default_results_dir", "graph_settings",
           "lm_free_graph_encoder", "lm_stage_bar", "lm_stage_wins", "load_backbone_for", "load_result", "rec_splits",
           "run_recommendation", "subsample", "tiny_dialogpt_for"]
