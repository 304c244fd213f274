"""Dataset statistics for chapter 1: Table 1 recomputed, distributions, linking coverage."""
from __future__ import annotations

import pandas as pd

from .schema import CRSDataset

# Table 1 of the paper (full datasets).
PAPER_TABLE1 = pd.DataFrame(
    [
        {"dataset": "redial", "dialogs": 10006, "utterances": 182150, "entities": 64364, "items": 6924},
        {"dataset": "inspired", "dialogs": 1001, "utterances": 35811, "entities": 17321, "items": 1123},
    ]
).set_index("dataset")


def table1(dataset: CRSDataset) -> pd.DataFrame:
    """Dialogs, utterances (messages as collected; turns after merging), entities, items, per split and in all."""
    rows = []
    per_split = dataset.report.get("per_split", {})
    for split, dialogs in dataset.splits.items():
        turns = sum(len(d) for d in dialogs)
        messages = per_split.get(split, {}).get("messages", turns) if isinstance(per_split, dict) else turns
        mentioned = {e for d in dialogs for t in d.turns for e in t.all_entities}
        items = {e for d in dialogs for t in d.turns for e in t.items}
        rows.append({"split": split, "dialogs": len(dialogs), "utterances": messages, "turns": turns,
                     "entities mentioned": len(mentioned), "items mentioned": len(items)})
    df = pd.DataFrame(rows).set_index("split")
    total = df.sum(numeric_only=True)
    every = {e for ds in dataset.splits.values() for d in ds for t in d.turns for e in t.all_entities}
    every_items = {e for ds in dataset.splits.values() for d in ds for t in d.turns for e in t.items}
    total["entities mentioned"] = len(every)
    total["items mentioned"] = len(every_items)
    df.loc["all"] = total
    df["entities (graph)"] = dataset.num_entities
    df["items (item set)"] = dataset.num_items
    return df.astype(int)


def beside_paper(ours: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Our 'all' rows next to the paper's Table 1."""
    rows = []
    for name, df in ours.items():
        a = df.loc["all"]
        p = PAPER_TABLE1.loc[name]
        rows.append({"dataset": name, "source": "paper (full)", "dialogs": p.dialogs, "utterances": p.utterances,
                     "entities": p.entities, "items": p["items"]})
        rows.append({"dataset": name, "source": "ours", "dialogs": a["dialogs"], "utterances": a["utterances"],
                     "entities": a["entities (graph)"], "items": a["items (item set)"]})
    return pd.DataFrame(rows).set_index(["dataset", "source"])


def turn_table(dataset: CRSDataset) -> pd.DataFrame:
    """One row per turn: split, role, length in words, number of entities and items."""
    rows = []
    for split, dialogs in dataset.splits.items():
        for d in dialogs:
            for t in d.turns:
                rows.append({"dataset": dataset.name, "split": split, "role": t.role,
                             "words": len(t.text.split()), "entities": len(t.entities), "items": len(t.items)})
    return pd.DataFrame(rows)


def dialog_table(dataset: CRSDataset) -> pd.DataFrame:
    """One row per dialog: split, turns, distinct items mentioned."""
    rows = []
    for split, dialogs in dataset.splits.items():
        for d in dialogs:
            rows.append({"dataset": dataset.name, "split": split, "turns": len(d),
                         "items": len({i for t in d.turns for i in t.items})})
    return pd.DataFrame(rows)


def linking_coverage(dataset: CRSDataset) -> pd.DataFrame:
    """Per split: share of turns with a linked entity, with an item, with either; entities per turn."""
    t = turn_table(dataset)
    g = t.groupby("split", sort=False)
    out = pd.DataFrame({
        "turns": g.size(),
        "with entity": g["entities"].apply(lambda s: (s > 0).mean()),
        "with item": g["items"].apply(lambda s: (s > 0).mean()),
        "with either": g.apply(lambda x: ((x["entities"] > 0) | (x["items"] > 0)).mean(), include_groups=False),
        "entities / turn": g["entities"].mean(),
        "items / turn": g["items"].mean(),
    })
    return out.round(3)
