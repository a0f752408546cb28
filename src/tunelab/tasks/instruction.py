"""Instruction tuning of a decoder LM: learn to write the response to a prompt, in the model's chat format.

Encoding renders the conversation with the model's chat template twice, without and with the response;
the tokens the response adds are the targets (loss only there), ending with the end-of-turn token. That
token is checked on every training example before training: a model trained without it never learns
to stop, the failure peer tools hit when padding and EOS share an id and the collator masks both.
Targets are passed to the model separately from the padding, so that cannot happen here.

Prompts longer than `data.max_length` minus the response lose tokens from their middle (the template's
start and the generation prompt at the end stay); a response that does not fit is a data error.

Validation is teacher-forced (loss, perplexity); the test split is also scored by greedy generation
(exact match, ROUGE-L, and how often the model stopped on its own), before and after training.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from tunelab.config.schema import DataConfig, GenerationConfig, HeadConfig, LossConfig, ModelConfig, RunConfig
from tunelab.data.chat import read_instructions
from tunelab.data.records import Record
from tunelab.errors import DataError, ModelError
from tunelab.tasks.base import Outputs, Predictions, TaskBase

if TYPE_CHECKING:  # torch, the encoding and the causal LM are imported where used (tasks/base.py says why)
    import torch
    from torch import nn

    from tunelab.data.encoding import Batch, EncodedSplit
    from tunelab.models.causal_lm import CausalLMTaskModel

__all__ = ["InstructionTuningTask", "FALLBACK_TEMPLATE", "stop_token_ids", "generation_pad_id", "chat_tokenizer",
           "render_prompt", "render_reply", "fit_prompt", "REFUSED_STRATEGIES"]

MIN_PROMPT_TOKENS = 8  # below this a truncated prompt no longer says what to do
# for a base model without a chat template: a plain instruction format, each turn closed by EOS
FALLBACK_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'assistant' %}### Response:\n{{ m['content'] }}"
                     "{{ eos_token }}\n{% else %}### {{ m['role'] | capitalize }}:\n{{ m['content'] }}\n\n{% endif %}"
                     "{% endfor %}{% if add_generation_prompt %}### Response:\n{% endif %}")


def generation_pad_id(tokenizer: Any) -> int:
    """The id generation pads with: the tokenizer's pad token, else its end-of-sequence token."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Tokens that end a reply: the tokenizer's EOS and, if the template closes turns with another special
    token (`<|im_end|>`, `<|eot_id|>`), that one too."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        tid = tokenizer.convert_tokens_to_ids(token) if token in tokenizer.get_vocab() else None
        if tid is not None and tid not in ids:
            ids.append(tid)
    return ids


REFUSED_STRATEGIES = {
    "head": "the LM head is tied to the input embeddings, so 'head only' would train just the final norm; "
            "use lora, or partial to train the top blocks",
    "prompt_tuning": "soft tokens shift every position of a decoder's output and of generation; use lora or ia3",
    "prefix_tuning": "its attention wrapper is written for BERT-style self-attention, not rotary/grouped-query "
                     "attention; use lora or ia3",
}


def _chat(messages: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in messages]


def decoder_lm_problems(config: RunConfig, task: str, verb: str) -> list[str]:
    """What a task that reads a decoder LM's own LM head (instruction tuning, preference) cannot take."""
    errors = []
    if config.head.type not in ("native", "auto"):
        errors.append(f"head.type: {task} {verb} with the model's own LM head; set head.type: native")
    if config.strategy.name in REFUSED_STRATEGIES:
        errors.append(f"strategy.name: {config.strategy.name} with task {task}: {REFUSED_STRATEGIES[config.strategy.name]}")
    return errors


class InstructionTuningTask(TaskBase):
    name = "instruction_tuning"
    metric_names = ("perplexity", "exact_match", "rouge_l", "stop_rate")
    hf_problem_type = "causal_lm"
    default_metric = "loss"
    supports_cache = False  # every block sees the prompt; rotary positions make the served prefix model-specific
    peft_task_type = "CAUSAL_LM"
    generative = True
    label_kind = "text"
    takes_class_weights = False

    def check_config(self, config: RunConfig) -> list[str]:
        """Combinations that make no sense for a decoder LM, with the reason."""
        return super().check_config(config) + decoder_lm_problems(config, self.name, "writes text")

    def num_outputs(self, label_names: list[str]) -> int:
        return 0

    def read(self, path: str | Path, config: DataConfig, *, require_labels: bool = True) -> list[Record]:
        return read_instructions(path, require_labels=require_labels)

    def load_preprocessor(self, model_dir: Path, config: RunConfig) -> Any:
        return chat_tokenizer(model_dir, config)

    # -- encoding ---------------------------------------------------------------------------------
    def encode(self, records: list[Record], tokenizer: Any, max_length: int, label_names: list[str], *,
               with_targets: bool = True, train: bool = False) -> EncodedSplit:
        from tunelab.data.encoding import IGNORE_INDEX, EncodedSplit

        stops = set(stop_token_ids(tokenizer))
        ids, targets = [], []
        for record in records:
            messages = record.messages or (("user", record.text),)
            prompt = render_prompt(tokenizer, messages)
            if not with_targets:
                ids.append(_fit_prompt(prompt, max_length, record))
                continue
            reply = render_reply(tokenizer, messages, prompt, str(record.label), stops, record)
            prompt = fit_prompt(prompt, len(reply), max_length, record)
            ids.append(prompt + reply)
            targets.append([IGNORE_INDEX] * len(prompt) + reply)
        if with_targets and train:
            _check_stops(records, targets, stops)
        return EncodedSplit(input_ids=ids, targets=None, records=records,
                            token_targets=targets if with_targets else None, targets_in_inputs=with_targets)

    # -- model and loss ---------------------------------------------------------------------------
    def build_model(self, model_cfg: ModelConfig, head_cfg: HeadConfig, label_names: list[str],
                    model_dir: Optional[Path] = None) -> CausalLMTaskModel:
        from tunelab.models.loading import build_causal_lm

        return build_causal_lm(model_cfg, model_dir)

    def loss_fn(self, config: LossConfig, train: EncodedSplit, label_names: list[str]) -> nn.Module:
        from tunelab.models.causal_lm import NextTokenLoss

        return NextTokenLoss()

    def reduce_outputs(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """`(B, 2)` per example: summed NLL of its response tokens and their count (full logits are never kept)."""
        from tunelab.models.causal_lm import next_token_nll

        return next_token_nll(logits, batch.inputs["labels"])

    def predict(self, outputs: Outputs, label_names: list[str], split: EncodedSplit) -> Predictions:
        import torch

        assert isinstance(outputs, torch.Tensor)
        per_example = [math.exp(s / c) if c else float("nan") for s, c in outputs.tolist()]
        return Predictions(values=per_example, scores=None, raw=outputs)

    def metrics(self, split: EncodedSplit, predictions: Predictions, label_names: list[str]) -> dict[str, Any]:
        total, count = predictions.raw.sum(0).tolist() if len(predictions.raw) else (0.0, 0.0)
        loss = total / count if count else float("nan")
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "target_tokens": int(count)}

    # -- generation -------------------------------------------------------------------------------
    def generate(self, model: CausalLMTaskModel, split: EncodedSplit, tokenizer: Any, config: GenerationConfig, *,
                 device: torch.device, batch_size: int, autocast: Any = None) -> tuple[list[str], list[bool]]:
        """Greedy replies to the split's prompts (the prompt part of each encoded example)."""
        from tunelab.models.causal_lm import generate_ids

        results = generate_ids(model, self.prompt_ids(split), max_new_tokens=config.max_new_tokens,
                               stop_ids=stop_token_ids(tokenizer), pad_id=generation_pad_id(tokenizer),
                               batch_size=batch_size, device=device, autocast=autocast)
        texts = [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens, _ in results]
        return texts, [stopped for _, stopped in results]

    def prompt_ids(self, split: EncodedSplit) -> list[list[int]]:
        """The prompt part of each encoded example: what generation continues."""
        return [_prompt_part(ids, split.token_targets[i] if split.token_targets else None)
                for i, ids in enumerate(split.input_ids)]

    def generation_metrics(self, records: list[Record], texts: list[str], stopped: list[bool]) -> dict[str, float]:
        from tunelab.evaluation.text import text_metrics

        return {**text_metrics(texts, [str(r.label) for r in records]),
                "stop_rate": sum(stopped) / max(len(stopped), 1)}

    def score_columns(self, label_names: list[str]) -> list[str]:
        return []

    def show(self, value: Any) -> str:
        return str(value)


def chat_tokenizer(model_dir: Path, config: RunConfig) -> Any:
    """The model's tokenizer with a chat template (FALLBACK_TEMPLATE where it has none) and an EOS token."""
    from tunelab.models.loading import load_tokenizer

    tokenizer = load_tokenizer(model_dir, config.model.trust_remote_code)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_TEMPLATE  # saved with the model, so serving formats the same way
    if tokenizer.eos_token_id is None:
        raise ModelError(f"model: the tokenizer in {model_dir} has no EOS token; a model trained without one never "
                         "learns to stop: set eos_token in its tokenizer_config.json")
    return tokenizer


def _tokens(tokenizer: Any, messages: tuple[tuple[str, str], ...], *, generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(_chat(messages), tokenize=False, add_generation_prompt=generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def render_prompt(tokenizer: Any, messages: tuple[tuple[str, str], ...]) -> list[int]:
    """The conversation's tokens through the generation prompt: what a reply continues."""
    return _tokens(tokenizer, messages, generation_prompt=True)


def render_reply(tokenizer: Any, messages: tuple[tuple[str, str], ...], prompt: list[int], reply: str,
                 stops: set[int], record: Record) -> list[int]:
    """The tokens `reply` adds after `prompt` (render_prompt's) in the chat template, through the end-of-turn token."""
    full = _tokens(tokenizer, messages + (("assistant", reply),), generation_prompt=False)
    if full[:len(prompt)] != prompt:
        raise ModelError(f"{record.where}: the model's chat template renders the prompt differently once the "
                         "reply is added, so the reply's tokens cannot be found; use a template whose "
                         "generation prompt is a prefix of the full conversation")
    return _through_stop(full[len(prompt):], stops, tokenizer.eos_token_id)


def fit_prompt(prompt: list[int], reply_tokens: int, max_length: int, record: Record) -> list[int]:
    """`prompt` cut to leave `reply_tokens` within `max_length` (see _fit_prompt); a reply that leaves no room for
    a prompt is a data error."""
    if reply_tokens > max_length - MIN_PROMPT_TOKENS:
        raise DataError(f"{record.where}: the response is {reply_tokens} tokens, which leaves no room for the "
                        f"prompt within data.max_length {max_length}; raise data.max_length or shorten it")
    return _fit_prompt(prompt, max_length - reply_tokens, record)


def _through_stop(reply: list[int], stops: set[int], eos: int) -> list[int]:
    """The reply's tokens up to and including the first stop token; EOS appended if the template adds none."""
    for i, token in enumerate(reply):
        if token in stops:
            return reply[:i + 1]
    return reply + [eos]


def _fit_prompt(prompt: list[int], budget: int, record: Record) -> list[int]:
    """Cut tokens from the middle of a prompt longer than `budget`: its start (system text, instruction) and its
    end (the question, the generation prompt) are what the model needs most."""
    if len(prompt) <= budget:
        return prompt
    if budget < MIN_PROMPT_TOKENS:
        raise DataError(f"{record.where}: data.max_length leaves {budget} tokens for a prompt of {len(prompt)}; "
                        "raise data.max_length")
    head = budget // 2
    return prompt[:head] + prompt[len(prompt) - (budget - head):]


def _prompt_part(ids: list[int], targets: Optional[list[int]]) -> list[int]:
    from tunelab.data.encoding import IGNORE_INDEX

    if targets is None:
        return ids
    first = next((i for i, t in enumerate(targets) if t != IGNORE_INDEX), len(ids))
    return ids[:first]


def _check_stops(records: list[Record], targets: list[list[int]], stops: set[int]) -> None:
    """Every training target must end with a stop token (see the module docstring)."""
    for record, row in zip(records, targets):
        if not row or row[-1] not in stops:
            raise DataError(f"{record.where}: the encoded response does not end with the end-of-turn token; the "
                            "model would never learn to stop. Check the tokenizer's eos_token and chat template")
