"""The rules that turn transferability scores and data facts into one plan: strategy, depth, learning
rate, epochs, head, class weights, each with its reason, and the score to expect. The one place
`recommend` decides anything; every threshold is a named constant with where its value came from.

The thresholds were set on the project's development sets only: BBC News (long, clean, 5 balanced topics)
and twitter-sentiment (short, noisy, 3 unbalanced classes), both with MiniLM, against their `compare`
results. sms-spam, trec-questions and movie-snippets are held out to judge the rules
(benchmarks/recommend_vs_compare.py) and never fed back into them.

The reasoning, in order:
1. Almost no data (a handful of examples per class): feature extraction (`head`), the one strategy whose
   few parameters cannot memorise it.
2. Little data (tens per class): prefix tuning (Li & Liang 2021: it beats fine-tuning in low-data settings):
   the backbone stays as it is and a few virtual tokens steer every block. On both development sets at 0.1
   of their training split (19-21 examples per class) it led or tied (BBC 0.908 macro-F1 against the head's
   0.876 and LoRA's 0.852; tweets 0.638 against IA3's 0.639 and the head's 0.597), while partial and full
   fine-tuning collapsed (0.52 / 0.43 on BBC).
3. A linear probe on the frozen features already reaches the ceiling: `head`; fine-tuning has nothing left
   to win and costs an order of magnitude more.
4. The depth curve of LogME flattens before the last block: the blocks past that point add nothing this
   task can use, so they are the ones to retrain (`partial`; Yosinski et al. 2014), and at least a third of
   the blocks adapt (Howard & Ruder 2018): on BBC News the curve flattens at block 5 of 6, and retraining
   one block scored 0.934 where retraining two scored 0.951.
5. Otherwise every block adds to the features: keep them all and adapt each a little (LoRA; Hu et al. 2022).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from tunelab.strategies.recommended import recommended_settings
from tunelab.strategies.registry import peft_method

__all__ = ["Evidence", "Advice", "advise", "useful_depth", "MIN_PER_CLASS", "LOW_DATA_PER_CLASS", "PROBE_CEILING",
           "FLAT_SHARE"]

MIN_PER_CLASS = 8         # training examples per class (on average) below which only the head trains
LOW_DATA_PER_CLASS = 50   # ... and below which the backbone is steered by prefix tuning instead of adapted
PROBE_CEILING = 0.97      # probe macro-F1 past which the frozen features leave too little to win (BBC News: 0.97)
FLAT_SHARE = 0.9          # share of LogME's rise over the depths by which the curve counts as flat
IMBALANCED = 3.0          # largest / smallest class past which the loss is weighted
# what fine-tuning adds over the probe, as a share of the probe's remaining error (measured on the development
# sets: BBC News head 0.975 -> lora 0.98 of a 0.025 gap; tweets 0.70 -> partial 0.77 of a 0.30 gap)
UPLIFT_LOW, UPLIFT_HIGH = 0.0, 0.4
# what stands in on a CNN for a method that needs attention blocks (not fitted: no image set is a development set)
_FOR_CNNS = {"prefix_tuning": "head", "lora": "full"}


@dataclass
class Evidence:
    """What recommend measured of the chosen backbone."""
    logme: list[float]             # per depth 0..N (0: the embeddings' output)
    probe: float                   # cross-validated macro-F1 of the ridge probe at depth N (the head's input)
    probe_spread: float            # its standard deviation over the folds
    logme_cls: Optional[float]     # LogME at depth N with the first token's state instead of the mean (text)
    declared_pooling: Optional[str]  # the pooling the backbone says it was trained with, if any
    per_class: dict[str, int]      # training examples per class
    imbalance_ratio: Optional[float]
    epochs: int                    # the config's epoch budget
    kind: str = "text"             # "image": a CNN, where the transformer-only methods (prefix tuning, LoRA) do not apply


@dataclass
class Advice:
    strategy: str
    overrides: dict[str, Any]                       # `key.path -> value` for the run config
    reasons: dict[str, str]                         # per decision: one sentence
    expected: tuple[float, float]                   # the expected test macro-F1, low to high
    notes: list[str] = field(default_factory=list)


def useful_depth(logme: list[float]) -> int:
    """The first depth whose LogME has made FLAT_SHARE of the curve's rise from the embeddings to its best."""
    base, best = logme[0], max(logme)
    if best <= base:
        return len(logme) - 1
    return next(k for k, v in enumerate(logme) if v - base >= FLAT_SHARE * (best - base))


def advise(evidence: Evidence) -> Advice:
    """The plan for the evidence: see the module's docstring for the order of the rules."""
    n_blocks = len(evidence.logme) - 1
    strategy, reason, depth = _strategy(evidence, n_blocks)
    if evidence.kind == "image" and strategy in _FOR_CNNS:
        strategy, reason = _FOR_CNNS[strategy], f"{reason}; on a CNN: {_FOR_CNNS[strategy]} instead"
    overrides: dict[str, Any] = {"strategy.name": strategy}
    overrides.update(recommended_settings(strategy, num_blocks=n_blocks, epochs=evidence.epochs))
    if strategy == "partial":
        overrides["strategy.freeze_blocks"] = depth
    method = peft_method(strategy)
    if method is not None and "optim.lr" not in overrides:
        overrides["optim.lr"] = method.default_lr  # spelled out: the user's config may set another strategy's
    reasons = {"strategy": reason, "optim.lr": _lr_reason(strategy, overrides)}
    head, reasons["head"] = _head(evidence)
    overrides.update(head)
    if evidence.imbalance_ratio is not None and evidence.imbalance_ratio >= IMBALANCED:
        overrides["loss.class_weights"] = "balanced"
        reasons["loss.class_weights"] = (f"the largest class is {evidence.imbalance_ratio:.1f}x the smallest: "
                                         "weighting the loss by inverse frequency keeps the rare class in view")
    return Advice(strategy, overrides, reasons, _expected(evidence, strategy))


def _strategy(evidence: Evidence, n_blocks: int) -> tuple[str, str, int]:
    per_class = sum(evidence.per_class.values()) / max(len(evidence.per_class), 1)
    if per_class < MIN_PER_CLASS:
        return "head", (f"{per_class:.0f} training examples per class (< {MIN_PER_CLASS}): too few to adapt anything "
                        "but the head without memorising them"), n_blocks
    if per_class < LOW_DATA_PER_CLASS:
        return "prefix_tuning", (f"{per_class:.0f} training examples per class (< {LOW_DATA_PER_CLASS}): too few to "
                                 "adapt blocks; virtual tokens steer every block and leave the backbone as it is"), n_blocks
    if evidence.probe >= PROBE_CEILING:
        return "head", (f"a linear probe on the frozen features already reaches macro-F1 {evidence.probe:.3f} "
                        f"(>= {PROBE_CEILING}): fine-tuning has little left to win"), n_blocks
    flat = useful_depth(evidence.logme)
    if flat < n_blocks:
        depth = min(flat, round(n_blocks * 2 / 3))
        return "partial", (f"{n_blocks - depth} of {n_blocks} blocks worth adapting: LogME rises until block {flat}, "
                           "then flattens, so the blocks above it are retrained (a third of them at least) and the ones "
                           "below kept"), depth
    return "lora", ("LogME still rises at the last block: every block adds to the features, so all are kept and "
                    "each adapted a little (LoRA)"), n_blocks


def _lr_reason(strategy: str, overrides: dict[str, Any]) -> str:
    lr = overrides["optim.lr"]
    if peft_method(strategy) is not None:
        return f"{lr:g}: {strategy}'s own default learning rate (measured on BBC News / MiniLM)"
    return f"{lr:g}: what {strategy} runs with in a comparison (strategies/recommended.py)"


def _head(evidence: Evidence) -> tuple[dict[str, str], str]:
    """The head's pooling: the backbone's own where it declares one (the config's `auto` keeps it), else a
    linear head over whichever of the mean and the first token's state LogME prefers."""
    if evidence.declared_pooling is not None:
        return {}, (f"auto: the backbone declares {evidence.declared_pooling} pooling, which its features "
                    "were trained for")
    mean = evidence.logme[-1]
    if evidence.logme_cls is not None and evidence.logme_cls > mean:
        return {"head.type": "linear", "head.pooling": "cls"}, \
            f"LogME of the first token's state ({evidence.logme_cls:.3f}) beats the mean's ({mean:.3f})"
    return {"head.type": "linear", "head.pooling": "mean"}, \
        f"LogME of the mean of the token states ({mean:.3f}) beats the first token's ({evidence.logme_cls or float('nan'):.3f})"


def _expected(evidence: Evidence, strategy: str) -> tuple[float, float]:
    """The probe's estimate with two fold deviations around it, raised for a strategy that adapts blocks by a
    share of the probe's remaining error (UPLIFT_LOW .. UPLIFT_HIGH)."""
    gap = 1.0 - evidence.probe
    low = evidence.probe - 2 * evidence.probe_spread + (UPLIFT_LOW * gap if strategy != "head" else 0.0)
    high = evidence.probe + 2 * evidence.probe_spread + (UPLIFT_HIGH * gap if strategy != "head" else 0.0)
    return max(0.0, low), min(1.0, high)
