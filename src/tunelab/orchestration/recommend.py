"""`tunelab recommend`: which backbone, which strategy, which depth, from one frozen forward pass per
candidate backbone, before anything is trained.

Each candidate is prepared like a run (its own tokenizer's encoding of the same split), and a stratified
sample of the training split (the same examples for every candidate) goes once through it in eval mode; the
pooled features entering every LayerStack depth are scored (evaluation/transferability.py). The best
backbone's plan comes from strategies/advice.py, the one place that decides. The plan's own frozen prefix is
then built into the activation cache for the train, validation and test splits (`warm`), through the same
feed the trainer reads, so a `tunelab train` of the written config starts from the stored features.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from rich.console import Console

from tunelab.catalog import parse_config, require_single_task
from tunelab.config.loading import apply_overrides, as_override
from tunelab.config.schema import RunConfig
from tunelab.data.facts import DataFacts, data_facts
from tunelab.data.splits import nested_fraction
from tunelab.errors import ConfigError
from tunelab.evaluation.metrics import classification_metrics
from tunelab.evaluation.transferability import h_score, logme, ridge_probe
from tunelab.models.pooling import declared_pooling
from tunelab.orchestration.prepare import Prepared, prepare
from tunelab.orchestration.recommend_features import depth_features
from tunelab.orchestration.cache_warm import warm_cache
from tunelab.strategies.advice import Advice, Evidence, advise

__all__ = ["RecommendRequest", "BackboneScores", "Recommendation", "recommend", "DEFAULT_TEXT_CANDIDATES"]

DEFAULT_TEXT_CANDIDATES = ("minilm", "paraphrase-minilm-l3")  # beside the config's own model
DEFAULT_IMAGE_CANDIDATES = ("efficientnet-lite0",)
SCORED_TASKS = ("classification", "image_classification")
DEFAULT_MAX_EXAMPLES = 1000


@dataclass
class RecommendRequest:
    out: Path
    models: Optional[list[str]] = None     # None: the config's model and the built-in text encoders
    max_examples: int = DEFAULT_MAX_EXAMPLES
    write_config: Optional[Path] = None
    warm: bool = True
    trust_pickle: bool = False


@dataclass
class BackboneScores:
    model: str
    num_blocks: int
    hidden_size: int
    depths: list[dict[str, float]]          # per depth 0..N: logme, h_score, probe_macro_f1, probe_std
    logme_cls: Optional[float]              # text: LogME of the first token's state at depth N
    facts: DataFacts
    seconds: float                          # the frozen pass and the scoring
    prepared: Optional[Prepared] = field(default=None, repr=False)

    @property
    def score(self) -> float:
        """The backbone's rank score: LogME at its best depth."""
        return max(d["logme"] for d in self.depths)

    @property
    def best_depth(self) -> int:
        return max(range(len(self.depths)), key=lambda k: self.depths[k]["logme"])


@dataclass
class Recommendation:
    out: Path
    backbones: list[BackboneScores]         # ranked, best first
    advice: Advice
    config: RunConfig                       # the plan as a validated run config
    sample_size: int
    train_size: int
    warm: Optional[dict[str, Any]]
    seconds: float


def recommend(raw: dict[str, Any], request: RecommendRequest, *, console: Optional[Console] = None,
              source: str = "<config>") -> Recommendation:
    console = console or Console(stderr=True)
    started = time.perf_counter()
    base = parse_config(raw, source=source)
    require_single_task(base, "recommend")
    _check_task(base)
    scored: list[BackboneScores] = []
    sample: Optional[list[int]] = None
    for name in _candidates(base, request):
        console.rule(f"recommend: {name}")
        prepared = prepare(_candidate_config(raw, name, source), trust_pickle=request.trust_pickle, console=console)
        if sample is None:
            sample = _sample(prepared, request.max_examples)
        scored.append(_score_backbone(name, prepared, sample))
        console.print(f"{name}: LogME {scored[-1].score:.3f} at depth {scored[-1].best_depth} "
                      f"({scored[-1].seconds:.1f} s)")
    ranked = sorted(scored, key=lambda b: -b.score)
    winner = ranked[0]
    advice = advise(_evidence(winner, base))
    config = _with_plan(raw, winner.model, advice.overrides, source)
    warm = warm_cache(winner.prepared, [config]) if request.warm and winner.prepared is not None else None
    for backbone in scored:
        backbone.prepared = None  # the runs' data and models are not kept past the advice
    assert sample is not None
    return Recommendation(request.out, ranked, advice, config, len(sample), winner.facts.train_examples, warm,
                          time.perf_counter() - started)


def _check_task(config: RunConfig) -> None:
    if config.task not in SCORED_TASKS:
        raise ConfigError(f"task: recommend scores single-label classes of text or images for now; {config.task!r} "
                          "is not supported (train or compare it directly)")


def _candidates(base: RunConfig, request: RecommendRequest) -> list[str]:
    defaults = DEFAULT_IMAGE_CANDIDATES if base.task == "image_classification" else DEFAULT_TEXT_CANDIDATES
    names = request.models or [base.model.name, *defaults]
    return list(dict.fromkeys(names))  # in order, once each


def _candidate_config(raw: dict[str, Any], model: str, source: str) -> RunConfig:
    """The user's config on backbone `model`, as feature extraction (the head strategy leaves the head on the
    pooling the backbone declares, which is what the features are pooled like)."""
    return _with_plan(raw, model, {"strategy.name": "head"}, source)


def _with_plan(raw: dict[str, Any], model: str, values: dict[str, Any], source: str) -> RunConfig:
    """The user's config with its strategy section replaced (the user's strategy options belong to the user's
    strategy) and `values` set."""
    config = copy.deepcopy(raw)
    config["strategy"] = {"name": values["strategy.name"]}
    overrides = [as_override(key, value) for key, value in {"model.name": model, **values}.items()]
    return parse_config(apply_overrides(config, overrides), source=source)


def _sample(prepared: Prepared, max_examples: int) -> list[int]:
    """A stratified sample of the training split: the same examples for every backbone (the split is the
    config's, whatever the tokenizer)."""
    train = prepared.splits.train
    if max_examples >= len(train):
        return list(range(len(train)))
    return nested_fraction(train, max_examples / len(train), seed=prepared.config.split_seed,
                           label_kind=prepared.task.label_kind)


def _score_backbone(name: str, prepared: Prepared, sample: list[int]) -> BackboneScores:
    started = time.perf_counter()
    features = depth_features(prepared, prepared.config, prepared.encoded["train"].select(sample))
    depths = [_depth_scores(features.mean[k], features.labels, prepared.label_names) for k in sorted(features.mean)]
    num_classes = len(prepared.label_names)
    facts = data_facts(prepared.encoded, prepared.label_names, prepared.config.data.max_length,
                       prepared.unknown_token_rates.get("train"))
    cls = None if features.cls is None else logme(features.cls, features.labels, num_classes).score
    return BackboneScores(model=name, num_blocks=features.num_blocks, hidden_size=features.mean[features.num_blocks].shape[1],
                          depths=depths, logme_cls=cls, facts=facts, seconds=time.perf_counter() - started,
                          prepared=prepared)


def _depth_scores(features: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict[str, float]:
    num_classes = len(label_names)
    probe = ridge_probe(features, labels, num_classes)
    folds = probe.per_fold(lambda y, p: classification_metrics(y, p, label_names)["macro_f1"])
    return {"logme": logme(features, labels, num_classes).score, "h_score": h_score(features, labels),
            "probe_macro_f1": float(np.mean(folds)), "probe_std": float(np.std(folds))}


def _evidence(winner: BackboneScores, base: RunConfig) -> Evidence:
    last = winner.depths[-1]
    assert winner.prepared is not None
    declared = declared_pooling(winner.prepared.model_dir)
    image = base.task == "image_classification"
    return Evidence(logme=[d["logme"] for d in winner.depths], probe=last["probe_macro_f1"],
                    probe_spread=last["probe_std"], logme_cls=winner.logme_cls,
                    declared_pooling="spatial mean" if image else None if declared is None else declared.pooling,
                    kind="image" if image else "text",
                    per_class=winner.facts.per_class, imbalance_ratio=winner.facts.imbalance_ratio,
                    epochs=base.train.epochs)

