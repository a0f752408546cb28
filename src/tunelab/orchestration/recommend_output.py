"""recommend.json and the written config: what recommend measured and advised, in files a person and
`benchmarks/recommend_vs_compare.py` read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from tunelab.atomic import atomic_write_json, atomic_write_text
from tunelab.config.loading import config_to_yaml
from tunelab.orchestration.recommend import BackboneScores, Recommendation

__all__ = ["recommendation_record", "write_recommendation"]


def recommendation_record(rec: Recommendation) -> dict[str, Any]:
    advice = rec.advice
    return {
        "metric": "macro_f1",
        "sample": {"examples": rec.sample_size, "of_train": rec.train_size},
        "backbones": [_backbone_record(b) for b in rec.backbones],
        "ranking": [b.model for b in rec.backbones],
        "plan": {"model": rec.backbones[0].model, "strategy": advice.strategy, "overrides": advice.overrides,
                 "reasons": advice.reasons, "expected_test_macro_f1": list(advice.expected)},
        "warnings": rec.backbones[0].facts.warnings(rec.config.data.max_length),
        "warm": rec.warm,
        "seconds": rec.seconds,
    }


def _backbone_record(b: BackboneScores) -> dict[str, Any]:
    facts = b.facts
    return {"model": b.model, "blocks": b.num_blocks, "hidden_size": b.hidden_size, "score": b.score,
            "best_depth": b.best_depth, "logme_cls": b.logme_cls, "seconds": b.seconds,
            "depths": [{"depth": k, **scores} for k, scores in enumerate(b.depths)],
            "facts": {"train_examples": facts.train_examples, "per_class": facts.per_class,
                      "imbalance_ratio": facts.imbalance_ratio, "truncated_share": facts.truncated_share,
                      "unknown_token_rate": facts.unknown_token_rate,
                      "only_outside_train": facts.only_outside_train}}


def write_recommendation(rec: Recommendation, write_config: Optional[Path]) -> dict[str, Any]:
    """DIR/recommend.json and DIR/recommended.yaml (and `write_config` when given): the plan as a config
    `tunelab train` runs as it is."""
    record = recommendation_record(rec)
    rec.out.mkdir(parents=True, exist_ok=True)
    text = config_to_yaml(rec.config)
    atomic_write_text(rec.out / "recommended.yaml", text)
    if write_config is not None:
        write_config.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(write_config, text)
    atomic_write_json(rec.out / "recommend.json", record)
    return record
