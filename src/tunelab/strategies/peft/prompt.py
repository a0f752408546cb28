"""Prompt tuning (Lester et al. 2021): k trainable soft tokens prepended to the input embeddings.

A forward pre-hook on the Hugging Face model turns `input_ids` into `inputs_embeds` with the prompt in
front and extends the attention mask, exactly as peft's PeftModelForSequenceClassification does, so the
saved file loads in peft with the same logits. With a native BERT head the pooler reads position 0, which
is then the first soft token (peft's behaviour); with a tunelab head the soft tokens are cut from the
hidden states before pooling. The soft-token layer is in `prompt_layers.py` (torch), imported when a model
is adapted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from tunelab.config.schema import StrategyConfig
from tunelab.errors import ModelError
from tunelab.strategies.peft.base import PeftSection, Adaptation, PeftMethod

if TYPE_CHECKING:
    from torch import nn

    from tunelab.models.task_model import TaskModel

__all__ = ["PromptSection", "PromptTuningMethod"]


class PromptSection(PeftSection):
    """Prompt tuning: k trainable soft tokens prepended to the input embeddings (Lester et al. 2021)."""

    num_tokens: int = Field(20, ge=1, le=512, description="k, the number of soft tokens.")
    init: Literal["random", "words"] = Field("random", description="random, or the embeddings of init_words (repeated to k).")
    init_words: Optional[str] = Field(None, description="init: words: text whose token embeddings start the prompt.")
    foreign_names: ClassVar[dict[str, str]] = {  # peft's PromptTuningConfig
        "num_virtual_tokens": "num_tokens", "prompt_tuning_init": "init", "prompt_tuning_init_text": "init_words"}

    @model_validator(mode="after")
    def _words(self) -> "PromptSection":
        if self.init == "words" and not (self.init_words or "").strip():
            raise ValueError("prompt.init is words but prompt.init_words is empty; give some words (e.g. the class names)")
        if self.init == "random" and self.init_words:
            raise ValueError("prompt.init_words is set but prompt.init is random; set prompt.init: words or drop init_words")
        return self


class PromptTuningMethod(PeftMethod):
    name = "prompt_tuning"
    title = "prompt tuning"
    section = "prompt"
    Section = PromptSection
    default_lr = 3e-2
    peft_type = "PROMPT_TUNING"
    peft_prefix = "base_model."
    starts_equal = False
    supports_freeze_blocks = False

    def peft_key(self, path: str, suffix: str) -> str:
        return suffix   # peft stores the prompt at the top level: `prompt_embeddings`

    def _apply(self, model: TaskModel, config: StrategyConfig) -> Adaptation:
        import torch

        from tunelab.strategies.peft.prompt_layers import SoftPrompt, init_from_words

        s = self.settings(config)
        network = model.network
        embeddings = network.get_input_embeddings()
        init = init_from_words(model, s.init_words or "", s.num_tokens) if s.init == "words" else None
        prompt = SoftPrompt(s.num_tokens, embeddings.embedding_dim, init).to(embeddings.weight.device)
        model.add_module("peft_prompt", prompt)
        max_positions = getattr(network.config, "max_position_embeddings", None)
        k = s.num_tokens

        def prepend(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
            ids = kwargs.pop("input_ids")                                    # (B, T)
            if max_positions is not None and ids.shape[1] + k > max_positions:
                raise ModelError(f"prompt tuning: {k} soft tokens + {ids.shape[1]} tokens exceed the model's "
                                 f"{max_positions} positions; lower data.max_length or strategy.prompt.num_tokens")
            embeds = module.get_input_embeddings()(ids)                     # (B, T, H)
            kwargs["inputs_embeds"] = torch.cat((prompt(ids.shape[0], embeds.dtype), embeds), dim=1)
            mask = kwargs.get("attention_mask")
            if mask is not None:
                kwargs["attention_mask"] = torch.cat((mask.new_ones(mask.shape[0], k), mask), dim=1)
            return args, kwargs

        def strip(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
            output["last_hidden_state"] = output["last_hidden_state"][:, k:]   # (B, T, H) again for the head
            return output

        hooks = [network.register_forward_pre_hook(prepend, with_kwargs=True)]
        if not model.is_native:
            hooks.append(network.register_forward_hook(strip, with_kwargs=True))
        return Adaptation(method=self.name, layers={"peft_prompt": prompt}, params=frozenset({"peft_prompt.prompt_embeddings"}),
                          hooks=hooks)

    def peft_config(self, model: TaskModel, config: StrategyConfig, adaptation: Adaptation) -> dict[str, Any]:
        hf = model.network.config
        return {"num_virtual_tokens": self.settings(config).num_tokens, "token_dim": model.network.get_input_embeddings().embedding_dim,
                "num_transformer_submodules": 1, "num_attention_heads": getattr(hf, "num_attention_heads", None),
                "num_layers": getattr(hf, "num_hidden_layers", None),
                # the trained values are in the file; peft needs no tokenizer to load them
                "prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None, "tokenizer_name_or_path": None}
