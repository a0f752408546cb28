"""`model/README.md`: the model card of a run, in the Hugging Face format (YAML front matter + sections).

Written at the end of a run from the files the run wrote (config.yaml, labels.json, test_metrics.json,
manifest.json), so it says nothing the run directory does not. The front matter carries base_model,
library_name (transformers, peft, or pytorch for image backbones), the base model's license (its own card's
front matter, else its config, else "unknown"), tags, the built-in data set where there is one and a
model-index with the test metrics. The "how to load" snippets are the ones that work for this run type;
`RUN_DIR` stands for the run directory (a test runs them with it substituted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import yaml

from tunelab.artifacts._card_snippets import snippets
from tunelab.atomic import atomic_write_text
from tunelab.catalog import parse_config
from tunelab.config.schema import RunConfig
from tunelab.strategies.peft.lora import quantized_base
from tunelab.strategies.registry import peft_method
from tunelab.tasks.registry import get_task

__all__ = ["write_model_card", "model_card", "base_card_metadata", "CARD_NAME"]

CARD_NAME = "README.md"
_BUILTIN_HUB = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "efficientnet-lite0": "efficientnet-lite0",
                "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
_HF_TASK = {"classification": "text-classification", "multilabel": "text-classification",
            "regression": "text-classification", "token_classification": "token-classification",
            "instruction_tuning": "text-generation", "image_classification": "image-classification",
            "mlm": "fill-mask", "causal_lm": "text-generation", "preference": "text-generation"}


def write_model_card(run_dir: Path, sizes: Optional[dict[str, int]] = None) -> None:
    """Write `run_dir/model/README.md` (atomically) from the run's own files; `sizes`: examples per split."""
    run_dir = Path(run_dir)
    config = parse_config(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")))
    read = lambda name: json.loads((run_dir / name).read_text(encoding="utf-8")) if (run_dir / name).is_file() else {}  # noqa: E731
    card = model_card(config, read("labels.json").get("labels", []), read("test_metrics.json"), read("manifest.json"),
                      sizes or {})
    atomic_write_text(run_dir / "model" / CARD_NAME, card)


def base_card_metadata(base_dir: Optional[Path]) -> dict[str, Any]:
    """The base model card's front matter (license, language, ...), with the config's license as a fallback."""
    if base_dir is None:
        return {}
    meta: dict[str, Any] = {}
    readme = Path(base_dir) / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            try:
                meta = yaml.safe_load(text.split("---", 2)[1]) or {}
            except (yaml.YAMLError, IndexError):
                meta = {}
    config = Path(base_dir) / "config.json"
    if "license" not in meta and config.is_file():
        license_ = json.loads(config.read_text(encoding="utf-8")).get("license")
        if license_:
            meta["license"] = license_
    return meta if isinstance(meta, dict) else {}


def model_card(config: RunConfig, labels: list[str], metrics: dict[str, Any], manifest: dict[str, Any],
               sizes: dict[str, int]) -> str:
    """The card's text: front matter, then training, evaluation, intended use and how to load it."""
    base_dir = Path(manifest["base_model"]) if manifest.get("base_model") else _resolved(config.model.name)
    base = base_card_metadata(base_dir)
    front = _front_matter(config, metrics, base)
    sections = [f"# {Path(config.output).name}: {config.model.name} fine-tuned for {config.task}",
                _training(config, manifest, sizes), _evaluation(metrics, labels), _intended_use(config, base),
                _how_to_load(config, labels, str(base_dir or config.model.name))]
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n\n".join(sections) + "\n"


def _resolved(name: str) -> Optional[Path]:
    """The base model's directory when the run's manifest does not name it (and it is still here)."""
    from tunelab.errors import TunelabError
    from tunelab.models.loading import resolve_model_dir

    try:
        return resolve_model_dir(name)
    except (TunelabError, OSError):
        return None


def _front_matter(config: RunConfig, metrics: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    method = peft_method(config.strategy.name)
    task = get_task(config.task)
    library = "peft" if method is not None and method.peft_type else "pytorch" if task.takes_images else "transformers"
    scalars = [{"type": k, "value": round(float(v), 6), "name": f"test {k}"} for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    dataset = config.data.builtin or "custom"
    front: dict[str, Any] = {"base_model": _BUILTIN_HUB.get(config.model.name, config.model.name),
                             "library_name": library, "license": base.get("license", "unknown"),
                             "tags": ["tunelab", config.task, config.strategy.name]}
    if base.get("language"):
        front["language"] = base["language"]
    if config.data.builtin:
        front["datasets"] = [config.data.builtin]
    front["model-index"] = [{"name": Path(config.output).name, "results": [
        {"task": {"type": _HF_TASK.get(config.task, config.task), "name": config.task},
         "dataset": {"name": dataset, "type": dataset, "split": "test"}, "metrics": scalars}]}]
    return front


def _training(config: RunConfig, manifest: dict[str, Any], sizes: dict[str, int]) -> str:
    trainable, total = manifest.get("trainable_params"), manifest.get("total_params")
    share = f" ({100 * trainable / total:.2f}%)" if trainable and total else ""
    data = config.data.builtin or config.data.train
    lines = ["## How it was trained", "",
             f"- strategy: `{config.strategy.name}`; trainable parameters: {trainable:,} of {total:,}{share}"
             if trainable is not None and total is not None else f"- strategy: `{config.strategy.name}`",
             f"- data: {data}; " + ", ".join(f"{n} {k}" for k, n in sizes.items()) if sizes else f"- data: {data}",
             f"- head: {config.head.type}; max length {config.data.max_length} tokens",
             f"- optimisation: lr {config.optim.lr:g}, {config.train.epochs} epoch(s), batch size {config.train.batch_size}, "
             f"seed {config.train.seed}, precision {manifest.get('precision', config.train.precision)}",
             f"- epochs run: {manifest.get('epochs_run', '?')}; best epoch: {manifest.get('best_epoch', '?')}",
             *_quantized(config),
             "", "The full resolved config is `config.yaml` in the run directory; versions and hashes are in "
             "`manifest.json`."]
    return "\n".join(lines)


def _quantized(config: RunConfig) -> list[str]:
    """QLoRA: the test metrics are the 4-bit base's; what loading the files gives."""
    quantize = quantized_base(config.strategy)
    if not quantize:
        return []
    return [f"- QLoRA: trained on the base with its Linear layers in 4 bits ({quantize}, bitsandbytes), where the "
            "test metrics below were scored; tunelab loads the adapter onto the base rounded the same way (plain "
            "weights, any device); peft onto the unrounded base gives slightly different predictions"]


def _evaluation(metrics: dict[str, Any], labels: list[str]) -> str:
    if not metrics:
        return "## Evaluation\n\nThe run had no test split."
    rows = [f"| {k} | {float(v):.4f} |" for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = ["## Evaluation", "", "On the held-out test split:", "", "| metric | value |", "|---|---|", *rows]
    per = metrics.get("per_class") or metrics.get("per_type")
    if isinstance(per, dict) and per:
        keys = [k for k in next(iter(per.values())) if isinstance(next(iter(per.values()))[k], (int, float))]
        out += ["", "Per class:", "", "| class | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        out += [f"| {name} | " + " | ".join(f"{float(v[k]):.4f}" if isinstance(v[k], float) else str(v[k]) for k in keys)
                + " |" for name, v in per.items()]
    return "\n".join(out)


def _intended_use(config: RunConfig, base: dict[str, Any]) -> str:
    languages = base.get("language")
    languages = ", ".join(languages) if isinstance(languages, list) else languages or "not stated by the base model's card"
    data = config.data.builtin or config.data.train
    return "\n".join(["## Intended use and limitations", "",
                      f"- Trained for `{config.task}` on {data}: it knows that data's domain, labels and style only; "
                      "check it on your own data before relying on it.",
                      f"- Languages (from the base model's card): {languages}.",
                      f"- Inputs are truncated to {config.data.max_length} tokens: text beyond that is not seen."
                      if not get_task(config.task).takes_images else
                      f"- Images are resized to {config.data.image_size or 'the backbone size'} pixels.",
                      "- Scores are the model's own; they are not calibrated probabilities."])


def _how_to_load(config: RunConfig, labels: list[str], base_dir: str) -> str:
    blocks = [f"{title}\n\n```python\n{code}```" if code else title for title, code in snippets(config, labels, base_dir)]
    return "## How to load it\n\n`RUN_DIR` is the run directory (this folder's parent).\n\n" + "\n\n".join(blocks)
