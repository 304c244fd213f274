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


def summary(got: Mapping[str, float], dataset_name: str) -> str:
    """One dataset's Table 3 finding as Markdown (numbers and names in bold), from :func:`numbers`."""
    name = f"**{dataset_name}**"
    if not _number(got.get("mscrs_bleu2")):
        return f"MSCRS's responses were not generated on {name} in this build (the chapter's `datasets` left it out)."
    out = [f"On {name}, MSCRS's responses reach BLEU-2 **{got['mscrs_bleu2']:.3f}** and Distinct-2 "
           f"**{got['mscrs_dist2']:.2f}**"]
    if _number(got.get("backbone_bleu2")):
        bleu = direction(got["mscrs_bleu2"], got["backbone_bleu2"], digits=3)
        dist = direction(got["mscrs_dist2"], got["backbone_dist2"], digits=2)
        out.append(f", **{bleu}** the plain backbone's BLEU-2 **{got['backbone_bleu2']:.3f}** and **{dist}** its "
                   f"Distinct-2 **{got['backbone_dist2']:.2f}**")
    if _number(got.get("nographs_bleu2")):
        out.append(f"; without graphs (UniCRS-like) they reach **{got['nographs_bleu2']:.3f}** and "
                   f"**{got['nographs_dist2']:.2f}**")
    out.append(".")
    if _number(got.get("mscrs_layers_bleu2")):
        out.append(f" With the prompt in every layer's keys and values (the authors' code), MSCRS reaches BLEU-2 "
                   f"**{got['mscrs_layers_bleu2']:.3f}** and Distinct-2 **{got['mscrs_layers_dist2']:.2f}**")
        if _number(got.get("nographs_layers_bleu2")):
            verdict = direction(got["mscrs_layers_bleu2"], got["nographs_layers_bleu2"], digits=3)
            out.append(f", **{verdict}** the UniCRS-like variant's **{got['nographs_layers_bleu2']:.3f}** "
                       f"(Distinct-2 **{got['nographs_layers_dist2']:.2f}**) under the same injection")
        out.append(".")
    refs = [("the most frequent training response, said to every test turn", "frequent"),
            ("the response of the most similar training context", "nearest"),
            ("a random training response", "shuffled")]
    scale = [f"{text}: BLEU-2 **{got[f'{key}_bleu2']:.3f}**, Distinct-2 **{got[f'{key}_dist2']:.2f}**"
             for text, key in refs if _number(got.get(f"{key}_bleu2"))]
    if scale:
        out.append(" For scale, responses chosen rather than generated: " + "; ".join(scale) + ".")
        if _number(got.get("frequent_bleu2")):
            verdict = direction(got["mscrs_bleu2"], got["frequent_bleu2"], digits=3)
            out.append(f" MSCRS's BLEU-2 is **{verdict}** that of one sentence said to everyone")
            if _number(got.get("mscrs_layers_bleu2")):
                layers = direction(got["mscrs_layers_bleu2"], got["frequent_bleu2"], digits=3)
                out.append(f"; with the layer prompt it is **{layers}** it")
            out.append(".")
    return "".join(out)
