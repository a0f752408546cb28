"""The one list of tasks: config validation and the CLI read their names from here."""

from __future__ import annotations

from tunelab.errors import ConfigError
from tunelab.tasks.base import Task
from tunelab.tasks.classification import ClassificationTask
from tunelab.tasks.multilabel import MultilabelTask
from tunelab.tasks.regression import RegressionTask
from tunelab.tasks.token_classification import TokenClassificationTask
from tunelab.tasks.image_classification import ImageClassificationTask
from tunelab.tasks.instruction import InstructionTuningTask
from tunelab.tasks.mlm import MaskedLMTask
from tunelab.tasks.causal_lm import CausalLMTask
from tunelab.tasks.preference import PreferenceTask

__all__ = ["TASKS", "TASK_ALIASES", "TASK_HINTS", "get_task", "task_names", "canonical_task", "task_hint"]

TASKS: dict[str, Task] = {t.name: t for t in (ClassificationTask(), MultilabelTask(), RegressionTask(),
                                              TokenClassificationTask(), ImageClassificationTask(),
                                              InstructionTuningTask(), MaskedLMTask(), CausalLMTask(),
                                              PreferenceTask())}


# Names users bring from Hugging Face (pipeline and AutoModelFor* names) and other tools that mean exactly one
# tunelab task, keyed by their normalised spelling (lower case, `-` and spaces as `_`): a config that says
# `task: text-classification` runs, and the resolved config saved with the run says `classification`.
TASK_ALIASES: dict[str, str] = {
    "text_classification": "classification", "sequence_classification": "classification",
    "single_label_classification": "classification", "sentiment_analysis": "classification",
    "multi_label": "multilabel", "multi_label_classification": "multilabel", "multilabel_classification": "multilabel",
    "text_regression": "regression", "ner": "token_classification", "named_entity_recognition": "token_classification",
    "sft": "instruction_tuning", "instruction": "instruction_tuning",
    "masked_lm": "mlm", "fill_mask": "mlm", "masked_language_modeling": "mlm", "clm": "causal_lm",
    "causal_language_modeling": "causal_lm", "dpo": "preference", "preference_tuning": "preference",
}

# Names that could mean more than one tunelab task: suggested, never accepted. Text generation is learnt from
# prompt/response pairs (instruction_tuning); plain text continues a model's pre-training (causal_lm, mlm).
TASK_HINTS: dict[str, str] = {
    "text_generation": "instruction_tuning", "text2text_generation": "instruction_tuning",
    "lm": "causal_lm", "language_modeling": "causal_lm",
}


def task_names() -> list[str]:
    return list(TASKS)


def _normalised(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def canonical_task(name: str) -> str:
    """tunelab's name for `name` when it is a task or an unambiguous alias of one; otherwise `name` unchanged
    (validation reports it). Applied once by the catalog, so every later reader sees tunelab's name."""
    if name in TASKS:
        return name
    key = _normalised(name)
    return key if key in TASKS else TASK_ALIASES.get(key, name)


def task_hint(name: str) -> str | None:
    """The task an ambiguous ecosystem name most likely means, for a did-you-mean (None if none)."""
    return TASK_HINTS.get(_normalised(name))


def get_task(name: str) -> Task:
    try:
        return TASKS[canonical_task(name)]
    except KeyError:
        raise ConfigError(f"task: unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
