"""Preference tuning of a decoder LM with DPO (Rafailov et al. 2023): from pairs of replies to one prompt, the
first preferred, learn to prefer replies like it, with no reward model and no generation.

Each reply is rendered with the model's chat template exactly as instruction tuning renders a prompt and its
response (tasks/instruction.py: the same tokens, through the end-of-turn token; a prompt too long for
`data.max_length` beside the longer reply loses tokens from its middle). A pair is encoded as one row, prompt +
chosen + rejected, that models/preference.py scores in one pass: the model's output per pair is `(2,)`, the summed
log-probability of each reply's tokens, log pi(chosen) and log pi(rejected).

The loss (tasks/losses.py) weighs those against the same figures under a reference: the model before training
(for LoRA and the other adapters, the base with the adapter off). A run computes the reference's log-probs once
per base model and split, before training, keeps them under the cache root (serving/reference_logprobs.py) and
puts them with `preference.beta` in each split's targets, `(N, 3)`. Without a run (a conformance check, a pair
file scored on its own) the targets are the reference-free form: log ref = 0 and the default beta.

Metrics: `preference_accuracy` (share of pairs whose implicit reward, beta * (log pi - log ref), is higher for the
chosen reply), `reward_margin`, `reward_chosen`, `reward_rejected` (means), `logprob_accuracy` (the model's own
preference: log pi(chosen) > log pi(rejected)) and `base_logprob_accuracy`, the same for the reference: the
figure before training, whose rewards are all 0; `logprob_margin` and `base_logprob_margin`, the mean of
log pi(chosen) - log pi(rejected) after and before.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from tunelab.config.schema import DataConfig, HeadConfig, LossConfig, ModelConfig, PreferenceConfig, RunConfig
from tunelab.data.chat import read_pairs
from tunelab.data.records import Record
from tunelab.errors import DataError, ModelError
from tunelab.tasks.base import Outputs, Predictions, TaskBase
from tunelab.tasks.causal_lm import refuse_encoder
from tunelab.tasks.instruction import (chat_tokenizer, decoder_lm_problems, fit_prompt, render_prompt, render_reply,
                                       stop_token_ids)

if TYPE_CHECKING:  # torch, the encoding and the model are imported where used (tasks/base.py says why)
    import torch
    from torch import nn

    from tunelab.data.encoding import EncodedSplit
    from tunelab.models.task_model import TaskModel

__all__ = ["PreferenceTask", "DEFAULT_BETA", "reference_targets"]

DEFAULT_BETA: float = PreferenceConfig.model_fields["beta"].default


def reference_targets(reference: "torch.Tensor", beta: float) -> "torch.Tensor":
    """A split's `(N, 3)` targets: the reference's summed log-probs of the chosen and the rejected reply, and beta."""
    import torch

    return torch.cat((reference.float(), torch.full((len(reference), 1), float(beta))), dim=1)


class PreferenceTask(TaskBase):
    name = "preference"
    metric_names = ("preference_accuracy", "reward_margin", "reward_chosen", "reward_rejected", "logprob_accuracy",
                    "base_logprob_accuracy")
    hf_problem_type = "causal_lm"
    default_metric = "preference_accuracy"  # DPO's headline figure; early_stopping.metric: loss is the smoother one
    supports_cache = False  # every block sees the prompt; the replies' rotary positions depend on it
    peft_task_type = "CAUSAL_LM"
    label_kind = "pair"
    takes_class_weights = False
    takes_label_smoothing = True  # conservative DPO
    needs_reference = True

    def check_config(self, config: RunConfig) -> list[str]:
        errors = super().check_config(config) + decoder_lm_problems(config, self.name, "scores replies")
        if config.loss.label_smoothing >= 0.5:
            errors.append(f"loss.label_smoothing: {config.loss.label_smoothing} assumes half the pairs or more are the "
                          "wrong way round, which turns the preference over; keep it below 0.5 (0.1 is usual)")
        return errors

    def num_outputs(self, label_names: list[str]) -> int:
        return 2  # log pi(chosen), log pi(rejected)

    def read(self, path: str | Path, config: DataConfig, *, require_labels: bool = True) -> list[Record]:
        return read_pairs(path)

    def load_preprocessor(self, model_dir: Path, config: RunConfig) -> Any:
        """The chat tokenizer, after checking that the model is a decoder LM (a run's adapter folder, which holds no
        config.json, was checked when it trained)."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        from tunelab.models.loading import model_type

        if not (model_dir / "config.json").is_file():
            return chat_tokenizer(model_dir, config)
        refuse_encoder(model_dir, self.name, "preference tuning scores the replies a decoder writes: use model: smollm2 "
                                             "or a local Llama, Mistral, GPT-2 ... directory")
        kind = model_type(model_dir)
        if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not config.model.trust_remote_code:
            raise ModelError(f"model: {model_dir} is {f'a {kind} model' if kind else 'not a transformers model'}, not a "
                             "decoder language model; task preference scores the replies a decoder LM writes: use "
                             "model: smollm2 or a local Llama, Mistral, GPT-2 ... directory")
        return chat_tokenizer(model_dir, config)

    def encode(self, records: list[Record], tokenizer: Any, max_length: int, label_names: list[str], *,
               with_targets: bool = True, train: bool = False) -> EncodedSplit:
        """One row per pair (prompt, chosen, rejected) and where its parts start; targets: reference-free until a
        run sets the reference's (see the module docstring)."""
        import torch

        from tunelab.data.encoding import EncodedSplit

        stops = set(stop_token_ids(tokenizer))
        rows = [_encode_pair(record, tokenizer, max_length, stops) for record in records]
        features = {"prompt_tokens": torch.tensor([p for _, p, _ in rows], dtype=torch.long),
                    "chosen_tokens": torch.tensor([c for _, _, c in rows], dtype=torch.long)}
        targets = reference_targets(torch.zeros(len(rows), 2), DEFAULT_BETA) if with_targets else None
        return EncodedSplit(input_ids=[ids for ids, _, _ in rows], targets=targets, records=records, features=features)

    def build_model(self, model_cfg: ModelConfig, head_cfg: HeadConfig, label_names: list[str],
                    model_dir: Optional[Path] = None) -> TaskModel:
        from tunelab.models.loading import build_causal_lm
        from tunelab.models.preference import PreferenceLMTaskModel

        return build_causal_lm(model_cfg, model_dir, wrapper=PreferenceLMTaskModel)

    def loss_fn(self, config: LossConfig, train: EncodedSplit, label_names: list[str]) -> nn.Module:
        from tunelab.tasks.losses import DPOLoss

        return DPOLoss(config.label_smoothing)

    def predict(self, outputs: Outputs, label_names: list[str], split: EncodedSplit) -> Predictions:
        """Per pair, the model's log-prob margin log pi(chosen) - log pi(rejected): above 0 it prefers the first."""
        import torch

        assert isinstance(outputs, torch.Tensor)
        margins = (outputs[:, 0] - outputs[:, 1]).tolist() if len(outputs) else []
        return Predictions(values=margins, scores=None, raw=outputs)

    def metrics(self, split: EncodedSplit, predictions: Predictions, label_names: list[str]) -> dict[str, Any]:
        from tunelab.tasks.losses import implicit_rewards

        logps, targets = predictions.raw.float(), split.targets
        if not len(logps):
            return {name: float("nan") for name in self.metric_names} | {"pairs": 0}
        rewards = implicit_rewards(logps, targets)                   # (N, 2)
        margin = rewards[:, 0] - rewards[:, 1]
        return {"preference_accuracy": float((margin > 0).float().mean()), "reward_margin": float(margin.mean()),
                "reward_chosen": float(rewards[:, 0].mean()), "reward_rejected": float(rewards[:, 1].mean()),
                "logprob_accuracy": float((logps[:, 0] > logps[:, 1]).float().mean()),
                "base_logprob_accuracy": float((targets[:, 0] > targets[:, 1]).float().mean()),
                "logprob_margin": float((logps[:, 0] - logps[:, 1]).mean()),
                "base_logprob_margin": float((targets[:, 0] - targets[:, 1]).mean()), "pairs": len(logps)}

    def score_columns(self, label_names: list[str]) -> list[str]:
        return []

    def show(self, value: Any) -> str:
        if isinstance(value, tuple):  # a pair's label: the chosen reply, then the rejected one
            return " | ".join(value)
        return f"{value:.4f}" if isinstance(value, float) else str(value)


def _encode_pair(record: Record, tokenizer: Any, max_length: int, stops: set[int]) -> tuple[list[int], int, int]:
    """(prompt + chosen + rejected tokens, prompt tokens, chosen tokens): each reply as the chat template renders it
    after the prompt, the prompt cut to fit `max_length` beside the longer reply (both replies see the same one)."""
    if not (isinstance(record.label, tuple) and len(record.label) == 2):
        raise DataError(f"{record.where}: task preference scores two replies to a prompt; give a JSON Lines file of "
                        '{"prompt", "chosen", "rejected"} (predict --input FILE, not --text)')
    messages = record.messages or (("user", record.text),)
    prompt = render_prompt(tokenizer, messages)
    chosen, rejected = (render_reply(tokenizer, messages, prompt, str(reply), stops, record) for reply in record.label)
    if chosen == rejected:
        raise DataError(f"{record.where}: the chosen and the rejected reply come out as the same tokens, which teaches "
                        "nothing; remove the pair or give a different rejected reply")
    prompt = fit_prompt(prompt, max(len(chosen), len(rejected)), max_length, record)
    return prompt + chosen + rejected, len(prompt), len(chosen)
