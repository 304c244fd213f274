"""Chapter 7's findings in words: Table 3's numbers of one dataset as a Markdown paragraph.

The prose of a chapter that may run without a dataset or a variant (the smoke profile, a reader's own
``datasets``) must never print ``nan``: a missing comparison is left out, a dataset not run says so.
"""
from __future__ import annotations

import math
from typing import Mapping

from .show import direction

#: the Table 3 variants the paragraph speaks of, by their key in the numbers
VARIANTS = {"mscrs": "MSCRS", "backbone": "plain backbone", "nographs": "w/o graphs (UniCRS-like)",
            "mscrs_layers": "MSCRS (layer prompt)", "nographs_layers": "w/o graphs (UniCRS-like, layer prompt)",
            "frequent": "most frequent response (ref.)", "nearest": "nearest context's response (ref.)",
            "shuffled": "random training response (ref.)"}


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x))


def numbers(table: "object", variants: Mapping[str, str] = VARIANTS) -> dict[str, float]:
    """``{key}_bleu2`` and ``{key}_dist2`` of each variant present in ``table`` (a frame indexed by variant with
    ``bleu@2`` and ``dist@2`` columns); a variant that did not run is absent, never NaN."""
    out: dict[str, float] = {}
    for key, name in variants.items():
        if name in table.index:
            for m in ("bleu@2", "dist@2"):
                out[f"{key}_{m.replace('@', '')}"] = float(table.loc[name, m])
    return out


#: the injections a build may run (chapter 7's ``injections``): key prefix and how the text names them
INJECTIONS = (("", "as input embeddings (Eq. 28)"),
              ("_layers", "in every layer's keys and values (the authors' code)"))


def summary(got: Mapping[str, float], dataset_name: str) -> str:
    """One dataset's Table 3 finding as Markdown (numbers and names in bold), from :func:`numbers`: MSCRS under
    each injection the build ran (the first against the plain backbone, each against its UniCRS-like variant),
    then the reference rows for scale."""
    name = f"**{dataset_name}**"
    ran = [(suffix, words) for suffix, words in INJECTIONS if _number(got.get(f"mscrs{suffix}_bleu2"))]
    if not ran:
        return f"MSCRS's responses were not generated on {name} in this build (the chapter's `datasets` left it out)."
    out = []
    for i, (suffix, words) in enumerate(ran):
        bleu, dist = got[f"mscrs{suffix}_bleu2"], got[f"mscrs{suffix}_dist2"]
        prompt = f" with the prompt {words}" if len(ran) > 1 or suffix else ""
        if i == 0:
            out.append(f"On {name}, MSCRS's responses{prompt} reach BLEU-2 **{bleu:.3f}** and Distinct-2 "
                       f"**{dist:.2f}**")
            if _number(got.get("backbone_bleu2")):
                out.append(f", **{direction(bleu, got['backbone_bleu2'], digits=3)}** the plain backbone's BLEU-2 "
                           f"**{got['backbone_bleu2']:.3f}** and **{direction(dist, got['backbone_dist2'], digits=2)}**"
                           f" its Distinct-2 **{got['backbone_dist2']:.2f}**")
        else:
            out.append(f" With the prompt {words}, MSCRS reaches BLEU-2 **{bleu:.3f}** and Distinct-2 **{dist:.2f}**")
        if _number(got.get(f"nographs{suffix}_bleu2")):
            other, other_dist = got[f"nographs{suffix}_bleu2"], got[f"nographs{suffix}_dist2"]
            out.append(f", **{direction(bleu, other, digits=3)}** the UniCRS-like variant's (without graphs) "
                       f"**{other:.3f}** (Distinct-2 **{other_dist:.2f}**) under the same injection")
        out.append(".")
    refs = [("the most frequent training response, said to every test turn", "frequent"),
            ("the response of the most similar training context", "nearest"),
            ("a random training response", "shuffled")]
    scale = [f"{text}: BLEU-2 **{got[f'{key}_bleu2']:.3f}**, Distinct-2 **{got[f'{key}_dist2']:.2f}**"
             for text, key in refs if _number(got.get(f"{key}_bleu2"))]
    if scale:
        out.append(" For scale, responses chosen rather than generated: " + "; ".join(scale) + ".")
        if _number(got.get("frequent_bleu2")):
            verdicts = [f"**{direction(got[f'mscrs{suffix}_bleu2'], got['frequent_bleu2'], digits=3)}**"
                        for suffix, _ in ran]
            out.append(f" MSCRS's BLEU-2 is {verdicts[0]} that of one sentence said to everyone")
            if len(ran) > 1:  # the same comparison, said once per injection
                out.append(f" with the prompt as input embeddings, and {verdicts[1]} it with the layer prompt")
            out.append(".")
    return "".join(out)
