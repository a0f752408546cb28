"""Entity-level scores for tagged sequences (exact span match, per type), as conlleval / seqeval count them.

A predicted entity counts only when its type, first and last word all equal a gold entity's. Tags may be
IOB2 or BIOES; an `I-`/`E-` tag that does not continue an entity of its type starts a new one (the
lenient reading conlleval uses), so a model's ill-formed output is still scored, not rejected.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

__all__ = ["entity_spans", "entity_metrics"]

Span = tuple[str, int, int]  # (type, first word, last word), inclusive


def entity_spans(tags: Sequence[str]) -> set[Span]:
    """The entities of one sentence's tags."""
    spans: set[Span] = set()
    kind, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-")
        continues = kind is not None and name == kind and prefix in ("I", "E")
        if kind is not None and not continues:
            spans.add((kind, start, i - 1))
            kind = None
        if prefix in ("B", "S") or (prefix in ("I", "E") and not continues):
            kind, start = name, i
        if kind is not None and prefix in ("E", "S"):
            spans.add((kind, start, i))
            kind = None
    return spans


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Micro P/R/F1 over all entities, macro F1 over types, per-type P/R/F1/support, and word accuracy."""
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    right = total = 0
    for g, p in zip(gold, predicted):
        gs, ps = entity_spans(g), entity_spans(p)
        for kind, *_ in gs:
            n_gold[kind] += 1
        for kind, *_ in ps:
            n_pred[kind] += 1
        for kind, *_ in gs & ps:
            tp[kind] += 1
        right += sum(a == b for a, b in zip(g, p))
        total += len(g)
    precision, recall, f1 = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    per_type = {}
    for kind in sorted(set(n_gold) | set(n_pred)):
        p_, r_, f_ = _prf(tp[kind], n_pred[kind], n_gold[kind])
        per_type[kind] = {"precision": p_, "recall": r_, "f1": f_, "support": n_gold[kind]}
    gold_types = [k for k in per_type if n_gold[k]]
    macro = sum(per_type[k]["f1"] for k in gold_types) / len(gold_types) if gold_types else 0.0
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1, "macro_entity_f1": macro,
            "token_accuracy": right / total if total else 0.0, "entities": sum(n_gold.values()), "per_type": per_type}
