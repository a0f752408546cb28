"""Entity spans and exact-match entity scores (IOB2 and BIOES), as conlleval counts them."""

from __future__ import annotations

import pytest

from tunelab.evaluation.entities import entity_metrics, entity_spans


@pytest.mark.parametrize("tags, spans", [
    (["B-PER", "I-PER", "O", "B-LOC"], {("PER", 0, 1), ("LOC", 3, 3)}),
    (["B-PER", "B-PER"], {("PER", 0, 0), ("PER", 1, 1)}),
    (["I-PER", "I-PER", "I-LOC"], {("PER", 0, 1), ("LOC", 2, 2)}),  # lenient: I- starts an entity
    (["S-LOC", "B-ORG", "I-ORG", "E-ORG", "O"], {("LOC", 0, 0), ("ORG", 1, 3)}),
    (["O", "O"], set()),
])
def test_entity_spans(tags: list[str], spans: set) -> None:
    assert entity_spans(tags) == spans


def test_exact_span_match_per_type() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O"]]  # PER span cut short: not a match
    m = entity_metrics(gold, pred)
    assert m["entity_precision"] == pytest.approx(2 / 3) and m["entity_recall"] == pytest.approx(2 / 3)
    assert m["per_type"]["PER"]["f1"] == 0.0 and m["per_type"]["LOC"]["f1"] == 1.0
    assert m["token_accuracy"] == pytest.approx(5 / 6)
    assert m["macro_entity_f1"] == pytest.approx(2 / 3)
    assert entity_metrics(gold, [["O"] * 4, ["O"] * 2])["entity_f1"] == 0.0
