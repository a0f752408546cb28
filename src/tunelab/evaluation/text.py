"""Scores of generated text against a reference: exact match and ROUGE-L.

Both compare normalised word sequences (lower case, punctuation stripped, whitespace collapsed), so
"Sport." matches "sport". ROUGE-L is the F-measure of the longest common subsequence of words (Lin
2004, beta = 1), as `rouge-score` computes it without stemming; written out here because the library
pulls in nltk and absl for twenty lines of dynamic programming.
"""

from __future__ import annotations

import re

__all__ = ["normalize", "exact_match", "rouge_l", "text_metrics"]

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalize(text: str) -> list[str]:
    return _PUNCT.sub(" ", text.lower()).split()


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """F1 of the longest common word subsequence; 0 when either side is empty."""
    p, r = normalize(prediction), normalize(reference)
    common = _lcs(p, r)
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean exact match and ROUGE-L over the pairs."""
    n = max(len(references), 1)
    return {"exact_match": sum(map(exact_match, predictions, references)) / n,
            "rouge_l": sum(map(rouge_l, predictions, references)) / n}
