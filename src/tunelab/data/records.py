"""Records: what every reader produces and every task encodes.

A record keeps where it came from (``file:row``) so that any later error (an unknown label in the test
split, an empty text) can name the exact place to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

__all__ = ["Record", "Label", "LabelKind", "Splits", "UNLABELLED_KINDS"]

# What a label is, which is all the data layer needs to know about a task (a task declares its kind; data
# never sees task names): "class": one class name, a str (ints are turned into their string form so the label
# map is uniform); "classes": a tuple of class names (multi-label); "number": a float (regression); "tags": one
# tag per word (tuple of str); "text": a free-text response ("" when unknown); "pair": two responses to one prompt,
# (chosen, rejected), the first preferred (preference tuning); "none": no label at all, the text is the whole
# example (continued pre-training; a built-in set lends its text, its labels dropped).
LabelKind = Literal["class", "classes", "number", "tags", "text", "pair", "none"]
UNLABELLED_KINDS: tuple[LabelKind, ...] = ("number", "text", "pair", "none")  # no classes: no label map
Label = Union[str, tuple[str, ...], float]


@dataclass(frozen=True)
class Record:
    text: str
    label: Label
    where: str  # "path/to/file.csv:row 12" (1-based data rows, header excluded) or "bbc-news:tech/001.txt"
    # token tasks: the words as the file split them (`text` is them joined by spaces, for display and hashing);
    # the tokenizer sees these, so the word boundaries the tags refer to are kept exactly
    words: Optional[tuple[str, ...]] = None
    # image tasks: an (H, W[, C]) array in [0, 1] or the image file's path; not part of equality or repr
    image: Any = field(default=None, compare=False, repr=False)
    # instruction tasks: the conversation before the response, as (role, content) pairs; `text` is its last
    # user message (for display), `label` the response the model learns to write
    messages: Optional[tuple[tuple[str, str], ...]] = None


@dataclass(frozen=True)
class Splits:
    train: list[Record]
    validation: list[Record]
    test: list[Record]
