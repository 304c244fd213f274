"""The paper's reported numbers (Tables 2 and 3), shown beside ours and never in their place.

Measured by the authors on the full datasets with DialoGPT-small, RoBERTa-base and ViT on a V100
(``../shared/paper/tables.md``).
"""
from __future__ import annotations

import pandas as pd

_T2_COLS = ["recall@1", "recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr@10", "mrr@50"]
_T2 = {
    "redial": """Popularity 0.011 0.053 0.183 0.029 0.057 0.021 0.027
TextCNN 0.010 0.066 0.187 0.033 0.059 0.023 0.028
BERT 0.027 0.142 0.307 0.075 0.112 0.055 0.063
ReDial 0.010 0.065 0.182 0.034 0.059 0.024 0.029
KBRD 0.033 0.150 0.311 0.083 0.118 0.062 0.070
KGSF 0.035 0.175 0.367 0.094 0.137 0.070 0.079
TREA 0.045 0.204 0.403 0.114 0.158 0.087 0.096
COLA 0.048 0.221 0.426 nan nan 0.086 0.096
VRICR 0.054 0.244 0.406 0.138 0.174 0.106 0.114
UniCRS 0.065 0.241 0.423 0.143 0.183 0.113 0.125
DCRS 0.076 0.253 0.439 0.154 0.195 0.123 0.132
MSCRS 0.081 0.264 0.451 0.161 0.201 0.128 0.136""",
    "inspired": """Popularity 0.031 0.155 0.322 0.085 0.122 0.064 0.071
TextCNN 0.025 0.119 0.245 0.066 0.094 0.050 0.056
BERT 0.049 0.189 0.322 0.112 0.141 0.088 0.095
ReDial 0.009 0.048 0.213 0.023 0.059 0.015 0.023
KBRD 0.042 0.135 0.236 0.088 0.109 0.073 0.077
KGSF 0.051 0.132 0.239 0.092 0.114 0.079 0.083
TREA 0.047 0.146 0.347 0.095 0.132 0.076 0.087
VRICR 0.043 0.141 0.336 0.091 0.134 0.075 0.085
UniCRS 0.085 0.230 0.398 0.149 0.187 0.125 0.133
DCRS 0.093 0.226 0.414 0.153 0.192 0.130 0.137
MSCRS 0.096 0.257 0.425 0.168 0.202 0.140 0.148""",
}

_T3_COLS = ["bleu@2", "bleu@3", "rouge2", "rougeL", "dist@2", "dist@3", "dist@4"]
_T3 = {
    "redial": """DialoGPT 0.041 0.021 0.054 0.258 0.436 0.632 0.771
GPT-2 0.031 0.013 0.041 0.244 0.405 0.603 0.757
BART 0.024 0.011 0.031 0.229 0.432 0.615 0.705
UniCRS 0.045 0.021 0.058 0.285 0.433 0.748 1.003
DCRS 0.048 0.024 0.063 0.285 0.779 1.173 1.386
MSCRS 0.054 0.027 0.070 0.294 0.784 1.332 1.553""",
    "inspired": """DialoGPT 0.031 0.014 0.041 0.207 1.954 2.750 3.235
GPT-2 0.026 0.011 0.034 0.212 2.119 3.084 3.643
BART 0.018 0.008 0.025 0.208 1.920 2.501 2.670
UniCRS 0.022 0.009 0.029 0.212 2.686 4.343 5.520
DCRS 0.033 0.014 0.045 0.229 3.950 5.729 6.233
MSCRS 0.040 0.019 0.052 0.235 4.197 5.983 6.556""",
}


def _frame(blocks: dict[str, str], cols: list[str]) -> pd.DataFrame:
    rows = []
    for ds, text in blocks.items():
        for line in text.splitlines():
            name, *vals = line.split()
            rows.append({"dataset": ds, "model": name, **{c: float(v) for c, v in zip(cols, vals)}})
    return pd.DataFrame(rows).set_index(["dataset", "model"])


def paper_table2() -> pd.DataFrame:
    """Table 2 of the paper: (dataset, model) x recall/ndcg/mrr."""
    return _frame(_T2, _T2_COLS)


def paper_table3() -> pd.DataFrame:
    """Table 3 of the paper (automatic conversation metrics; DIST in the UniCRS count convention)."""
    return _frame(_T3, _T3_COLS)
