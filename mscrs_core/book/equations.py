"""The paper's numbered equations (Eq. 1-29 of MSCRS, SIGIR '25), as LaTeX, with the library code that computes each.

One table serves the chapters (``equation_with_code(7, ...)`` in :mod:`mscrs_core.book.show` looks the LaTeX up
here) and the book's equation-to-code page ``book/equations.md`` (written from it by
``python -m mscrs_core.book.reference --write``; ``tests/test_book_show.py`` fails when the page or a name below
is out of date).

The LaTeX is the paper's, transcribed from the printed text: the symbols are the paper's, not the code's.
``implemented_by`` names public objects (documented on the API page); ``chapter`` is the chapter that shows the
equation beside its code.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Equation:
    """One numbered equation of the paper and where the library computes it."""

    latex: str
    section: str  # paper section
    what: str  # a few words
    implemented_by: tuple[str, ...]  # dotted names of public functions, classes or methods
    chapter: str  # notebook stem of the chapter that shows it beside its code
    note: str = ""  # deviation or scope, when there is one


_G = "mscrs_core.graphs"
_F = "mscrs_core.features"
_M = "mscrs_core.models"
CH2, CH3, CH6 = "02_semantic_graphs", "03_recommendation_run", "06_conversation_run"

EQUATIONS: dict[int, Equation] = {
    1: Equation(
        r"\mathbf{n}_e^{(l+1)} = \sigma\Big(\sum_{r \in \mathcal{R}} \sum_{e' \in \mathcal{E}_e^r} "
        r"\frac{1}{Z_{e,r}} \mathbf{W}_r^{(l)} \mathbf{n}_{e'}^{(l)} + \mathbf{W}^{(l)} \mathbf{n}_e^{(l)}\Big)",
        "4.1", "R-GCN layer over the knowledge graph",
        (f"{_G}.kg.build_kg_edges", f"{_G}.kg.KGEncoder", f"{_G}.rgcn.GroupedRGCNConv"), CH2,
        "Paper default: ReLU, inverse edges in their own relation; `variant=\"authors_code\"`: no activation, "
        "residual"),
    2: Equation(
        r"v_i^t = \mathbf{F}_{\text{GPT}}(i; \theta_p)",
        "4.1", "item description by an LLM",
        (f"{_F}.describe_llm.LLMDescriber", f"{_F}.describe_offline.OfflineDescriber"), CH2,
        "`LLMDescriber` is the paper's prompt (Figure 3) for an OpenAI-compatible endpoint; offline the book uses "
        "`OfflineDescriber`, the same four aspects written from the data"),
    3: Equation(
        r"x_i^t = \operatorname{AvgPool}\big(\mathbf{F}_{\text{RoBERTa}}(v_i^t; \theta_r)\big)",
        "4.1", "text features of an item",
        (f"{_F}.text_encoder.TextEncoder", f"{_F}.text_encoder.mean_pool"), CH2,
        "Offline: all-MiniLM-L6-v2 (384-d); `text_encoder=\"roberta-base\"` is the paper's"),
    4: Equation(
        r"Z_i = \{z_1^v, z_2^v, \dots, z_l^v\} = \mathbf{F}_{\text{ViT}}(m_1^v, m_2^v, \dots, m_l^v; \theta_v)",
        "4.1", "image features of an item's stills",
        (f"{_F}.image_encoder.ImageEncoder.encode_images",), CH2,
        "Implemented and tested on generated images; no stills exist here, so no run uses it"),
    5: Equation(
        r"x_i^v = \frac{1}{l} \sum_{j=1}^{l} z_j^v",
        "4.1", "mean over an item's images",
        (f"{_F}.image_encoder.ImageEncoder.encode_folder",), CH2,
        "As Eq. (4)"),
    6: Equation(
        r"\mathbf{C}_{i,j} = \sum_{y=1}^{Y} \operatorname{count}(e_i, e_j \mid Q_y)",
        "4.2", "co-mention counts over the training dialogs",
        (f"{_G}.comention.comention_counts", f"{_G}.comention.build_comention_graph"), CH2,
        "An edge where the count exceeds a threshold the paper does not give (1 here, 4 in the authors' code)"),
    7: Equation(
        r"\mathbf{E}_c^{(l)} = \big(\mathbf{D}_c^{-\frac{1}{2}} \mathbf{C} \mathbf{D}_c^{-\frac{1}{2}}\big)"
        r" \mathbf{E}_c^{(l-1)}",
        "4.2", "LightGCN on the collaborative graph",
        (f"{_G}.lightgcn.normalize_adjacency", f"{_G}.lightgcn.LightGCN", f"{_G}.lightgcn.make_lightgcn"), CH2),
    8: Equation(
        r"\hat{\mathbf{E}}_c = \operatorname{AvgPool}([\mathbf{E}_c^{(0)}, \mathbf{E}_c^{(1)}, \dots, "
        r"\mathbf{E}_c^{(l)}])",
        "4.2", "layer average, collaborative graph",
        (f"{_G}.lightgcn.LightGCN.forward",), CH2),
    9: Equation(
        r"\mathbf{A}_{ij}^m = \frac{(\mathbf{x}_i^m)^\top \mathbf{x}_j^m}"
        r"{\lVert \mathbf{x}_i^m \rVert \, \lVert \mathbf{x}_j^m \rVert}",
        "4.2", "cosine similarity of item features",
        (f"{_G}.knn.build_knn_graph",), CH2, "Negative similarities set to zero, as the text says"),
    10: Equation(
        r"\tilde{\mathbf{A}}_{ij}^m = \begin{cases} 1 & \text{if } \mathbf{A}_{ij}^m \in "
        r"\text{top-}k(\mathbf{A}_i^m), \\ 0 & \text{otherwise} \end{cases}",
        "4.2", "top-k sparsification",
        (f"{_G}.knn.build_knn_graph",), CH2,
        "Made undirected (Eq. 11's symmetric normalisation implies it); the authors' code keeps it directed"),
    11: Equation(
        r"\mathbf{E}_m^{(l+1)} = \big(\mathbf{D}_m^{-\frac{1}{2}} \tilde{\mathbf{A}}^m "
        r"\mathbf{D}_m^{-\frac{1}{2}}\big) \mathbf{E}_m^{(l)}",
        "4.2", "LightGCN on the text / image graph",
        (f"{_G}.lightgcn.LightGCN", f"{_G}.lightgcn.make_lightgcn"), CH2),
    12: Equation(
        r"\hat{\mathbf{E}}_t = \operatorname{AvgPool}([\mathbf{E}_t^{(0)}, \mathbf{E}_t^{(1)}, \dots, "
        r"\mathbf{E}_t^{(l)}])",
        "4.2", "layer average, text graph",
        (f"{_G}.lightgcn.LightGCN.forward",), CH2),
    13: Equation(
        r"\hat{\mathbf{E}}_v = \operatorname{AvgPool}([\mathbf{E}_v^{(0)}, \mathbf{E}_v^{(1)}, \dots, "
        r"\mathbf{E}_v^{(l)}])",
        "4.2", "layer average, image graph",
        (f"{_G}.lightgcn.LightGCN.forward",), CH2, "No image graph exists here (Eq. 4)"),
    14: Equation(
        r"\hat{\mathbf{E}}_m = \lambda \hat{\mathbf{E}}_t + (1 - \lambda) \hat{\mathbf{E}}_v",
        "4.2", "mixing the text and image results",
        (f"{_G}.fusion.SemanticGraphEncoder",), CH2,
        "An item with one modality takes it with weight 1"),
    15: Equation(
        r"\hat{\mathbf{E}}_\alpha = \operatorname{AvgPool}([\hat{\mathbf{E}}_c, \mathbf{N}^{(1)}])",
        "4.2", "knowledge graph and collaborative graph fused",
        (f"{_G}.fusion.SemanticGraphEncoder.forward",), CH2,
        "With `variant=\"authors_code\"`: E_c alone"),
    16: Equation(
        r"\hat{\mathbf{E}}_{final} = \hat{\mathbf{E}}_\alpha[\mathcal{I}] + \hat{\mathbf{E}}_m",
        "4.2", "multi-modal result added to the item rows",
        (f"{_G}.fusion.SemanticGraphEncoder.forward",), CH2),
    17: Equation(
        r"\tilde{\mathbf{V}}_s = \mathbf{W}_1 \mathbf{V}_s \mathbf{W}_2",
        "4.3", "entity prompt (bilinear map)",
        (f"{_M}.prompt_encoder.PromptEncoder.entity_prompt",), CH3),
    18: Equation(
        r"L_{fuse} = -\Big(\log \frac{\exp(\mathbf{T}_s \cdot \tilde{\mathbf{V}}_s / \tau)}"
        r"{\sum_{\gamma}^{\Omega} \exp(\mathbf{T}_s \cdot \mathbf{T}_\gamma / \tau)} + "
        r"\log \frac{\exp(\tilde{\mathbf{V}}_s \cdot \mathbf{T}_s / \tau)}"
        r"{\sum_{\gamma}^{\Omega} \exp(\tilde{\mathbf{V}}_s \cdot \tilde{\mathbf{V}}_\gamma / \tau)}\Big)",
        "4.3", "contrastive fusion of entities and context",
        (f"{_M}.prompt_encoder.PromptEncoder.fuse_loss",), CH3,
        "In-batch negatives on L2-normalised vectors; T_s is the mean input embedding of the context, not RoBERTa"),
    19: Equation(
        r"\mathbf{r}_s = [\hat{\mathbf{V}}_s; \mathbf{O}_{rec}; s]",
        "4.3", "recommendation prompt",
        (f"{_M}.prompt_encoder.PromptEncoder.forward", f"{_M}.prompt_encoder.assemble_inputs"), CH3,
        "The book's default puts the prompt after the context (`prompt_position=\"suffix\"`); `\"prefix\"` is "
        "the printed order"),
    20: Equation(
        r"\hat{\mathbf{r}}_s = \operatorname{Pooling}\big(\mathbf{F}_{\text{DialoGPT}}(\mathbf{r}_s; "
        r"\theta_{rec})\big)",
        "4.3", "user preference from the frozen language model",
        (f"{_M}.recommender.MSCRSRecommender.encode", f"{_M}.recommender.MSCRSRecommender.input_prompt_state",
         f"{_M}.recommender.MSCRSRecommender.layer_prompt_state"), CH3,
        "SmolLM2-135M offline instead of DialoGPT-small; the last token's state"),
    21: Equation(
        r"\mathbf{P}_{entity}(i) = \operatorname{Softmax}(\hat{\mathbf{r}}_s \hat{\mathbf{E}}_{final}^\top)",
        "4.3", "entity probabilities (pre-training)",
        (f"{_M}.recommender.MSCRSRecommender.scores", f"{_M}.recommender.MSCRSRecommender.score_entities"), CH3),
    22: Equation(
        r"L_{pre}(\theta_{rec}) = -\sum_{j \in S_{train}} \sum_{i=1}^{K} \log \mathbf{P}_{entity}^j"
        r"(i \mid \hat{\mathbf{r}}_s, \theta_{rec}) + \delta L_{fuse}",
        "4.3", "pre-training loss",
        (f"{_M}.recommender.MSCRSRecommender.forward",), CH3, "With `task=\"pretrain\"`"),
    23: Equation(
        r"\mathbf{P}_{item}(i) = \operatorname{Softmax}(\hat{\mathbf{r}}_s "
        r"\hat{\mathbf{E}}_{final}^\top[\mathcal{I}])",
        "4.3", "item probabilities",
        (f"{_M}.recommender.MSCRSRecommender.scores", f"{_M}.recommender.MSCRSRecommender.score_items"), CH3,
        "The book's default head is a scaled cosine with an item bias; `RecommenderConfig.paper()` is the dot "
        "product as printed"),
    24: Equation(
        r"L_{rec}(\theta_{rec}) = -\sum_{j \in S_{train}} \sum_{i=1}^{N} y_i^j \log \mathbf{P}_{item}^j"
        r"(i \mid \hat{\mathbf{r}}_s, \theta_{rec}) + \delta L_{fuse}",
        "4.3", "recommendation loss",
        (f"{_M}.recommender.MSCRSRecommender.forward",), CH3, "With `task=\"rec\"`"),
    25: Equation(
        r"\hat{Q}_s = Q_s \cup \bigcup_{G \in \{\mathcal{G}_{kg}, \mathcal{G}_c, \mathcal{G}_t, \mathcal{G}_v\}} "
        r"\{e_j \mid \exists e_i \in E(G), A_{ij}(G) = 1\}",
        "4.4", "enhanced entity set of a context",
        (f"{_M}.enhanced_entities.EntityEnhancer", f"{_G}.fusion.SemanticGraphEncoder.neighbours"), CH6,
        "Here e_i ranges over the context's entities Q_s, as the text says; at most 32 neighbours are kept, ranked"),
    26: Equation(
        r"\hat{\mathbf{E}}_s = \operatorname{AvgPool}([\mathbf{E}_s^{(0)}, \mathbf{E}_s^{(1)}])",
        "4.4", "correlation semantic mapping over training contexts",
        (f"{_M}.context_mapping.ContextBank", f"{_M}.context_mapping.CorrelationSemanticMapping"), CH6,
        "E_s^(0) are mean-pooled all-MiniLM-L6-v2 context embeddings, not RoBERTa token states"),
    27: Equation(
        r"\tilde{\mathbf{T}}_s = \operatorname{AvgPool}([\operatorname{Reshape}(\hat{e}_s), \hat{\mathbf{T}}_s])",
        "4.4", "enhanced context embedding",
        (f"{_M}.conversation.MSCRSGenerator.build_prompt",), CH6,
        "Reshape is a learned linear map to p positions (a pooled vector has no token axis)"),
    28: Equation(
        r"\mathbf{c}_s = [\tilde{\mathbf{T}}_s; \mathbf{O}_{cov}; s]",
        "4.4", "conversation prompt",
        (f"{_M}.conversation.MSCRSGenerator.inputs_embeds", f"{_M}.conversation.MSCRSGenerator.suffix_inputs"),
        CH6, "The book's default puts the prompt after the context (`prompt_position=\"suffix\"`)"),
    29: Equation(
        r"L_{gen}(\theta_{gen}) = -\frac{1}{Y} \sum_{i \in S_{train}} \sum_{j=1}^{l_i} "
        r"\log \mathbf{P}(w_{i,j} \mid \hat{\mathbf{c}}_s; \theta_{gen}; w_{<j})",
        "4.4", "response generation loss",
        (f"{_M}.conversation.MSCRSGenerator.forward",), CH6),
}


def resolve(dotted: str) -> object:
    """The object a dotted name of :data:`EQUATIONS` names (``module.Class.method``); ImportError/AttributeError
    name what is missing."""
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"no module in {dotted!r}")
