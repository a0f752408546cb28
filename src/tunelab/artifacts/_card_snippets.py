"""The "how to load it" code of a model card: snippets that run for this run type (a test executes them).

A native-head text run loads with transformers alone, and so does a full/head run with tunelab's linear head
(the backbone with transformers, the head's two tensors with safetensors, pooled in three lines); an adapter
saved in peft's format (LoRA, IA3, prompt tuning) with a native head loads with peft on the base model; every
run loads with tunelab.
"""

from __future__ import annotations

from tunelab.config.schema import RunConfig
from tunelab.strategies.registry import peft_method
from tunelab.tasks.registry import get_task

__all__ = ["snippets"]

_EXAMPLE = "an example text"
# how each task turns logits into what it predicts, as one expression over `logits`
_READ = {"classification": "logits.softmax(-1)", "multilabel": "logits.sigmoid()", "regression": "logits[:, 0]",
         "token_classification": "logits.argmax(-1)"}


def snippets(config: RunConfig, labels: list[str], base_dir: str) -> list[tuple[str, str]]:
    """(title, python code) pairs, `RUN_DIR` standing for the run directory; a note has no code."""
    task = get_task(config.task)
    method = peft_method(config.strategy.name)
    native = config.head.type == "native" and config.task in _READ
    out: list[tuple[str, str]] = []
    if task.needs_reference:  # preference: a causal LM that writes replies, and tunelab's scores of pairs
        return _preference(config, method is not None and bool(method.peft_type), base_dir)
    if task.saves_backbone:
        out.append((f"As the backbone of a later run: `model: RUN_DIR/model` in its config (a plain {_LM[config.task][0]} "
                    "directory; any update of a PEFT method is merged into its weights).", ""))
        out.append(("With transformers:", _language_model(config)))
    elif native and method is None:
        out.append(("With transformers:", _transformers(config)))
    elif config.head.type == "linear" and method is None and config.task in _READ and config.task != "token_classification":
        out.append(("With transformers and safetensors (the backbone, then tunelab's linear head):", _pooled(config)))
    elif native and method is not None and method.peft_type:
        out.append(("With peft (the adapter on its base model):", _peft(config, labels, base_dir)))
    elif method is not None or not native:
        why = "a tunelab head" if not native else f"a {method.name} adapter (not in peft's format)"
        out.append((f"This run has {why}, so it loads with tunelab (below).", ""))
    out.append(("With tunelab (predictions as `tunelab predict` writes them):", _tunelab(task.takes_images)))
    return out


# a continued pre-training run's backbone: its auto class and what the snippet prints from `model`'s output
_LM = {"mlm": ("AutoModelForMaskedLM",
               f'inputs = tokenizer([f"{_EXAMPLE} {{tokenizer.mask_token}}"], return_tensors="pt")\n'
               "with torch.no_grad():\n    logits = model(**inputs).logits\n"
               'masked = (inputs["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0]\n'
               "print(tokenizer.decode(logits[0, masked].argmax()))  # the most probable token for the mask\n"),
       "causal_lm": ("AutoModelForCausalLM",
                     f'inputs = tokenizer(["{_EXAMPLE}"], return_tensors="pt")\n'
                     "with torch.no_grad():\n    loss = model(**inputs, labels=inputs[\"input_ids\"]).loss\n"
                     "print(torch.exp(loss))  # the text's perplexity\n")}


def _language_model(config: RunConfig) -> str:
    auto, use = _LM[config.task]
    return (f"import torch\nfrom transformers import AutoTokenizer, {auto}\n\n"
            'model_dir = "RUN_DIR/model"\n'
            "tokenizer = AutoTokenizer.from_pretrained(model_dir)\n"
            f"model = {auto}.from_pretrained(model_dir).eval()\n" + use)


def _auto_class(config: RunConfig) -> str:
    return "AutoModelForTokenClassification" if config.task == "token_classification" else "AutoModelForSequenceClassification"


def _inputs(config: RunConfig) -> str:
    if config.task == "token_classification":
        return (f'inputs = tokenizer([{"an example text".split()!r}], is_split_into_words=True, truncation=True, '
                f'max_length={config.data.max_length}, return_tensors="pt")\n')
    return f'inputs = tokenizer(["{_EXAMPLE}"], truncation=True, max_length={config.data.max_length}, return_tensors="pt")\n'


def _transformers(config: RunConfig) -> str:
    auto = _auto_class(config)
    return (f"import torch\nfrom transformers import AutoTokenizer, {auto}\n\n"
            'model_dir = "RUN_DIR/model"\n'
            "tokenizer = AutoTokenizer.from_pretrained(model_dir)\n"
            f"model = {auto}.from_pretrained(model_dir).eval()\n" + _inputs(config) +
            "with torch.no_grad():\n    logits = model(**inputs).logits\n"
            f"print({_READ[config.task]})\n")


def _pooled(config: RunConfig) -> str:
    pool = ("    pooled = states[:, 0]\n" if config.head.pooling == "cls" else
            '    mask = inputs["attention_mask"].unsqueeze(-1).to(states.dtype)\n'
            "    pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)\n")
    norm = ("    pooled = torch.nn.functional.normalize(pooled, dim=-1) * pooled.shape[-1] ** 0.5\n"
            if config.head.normalize else "")
    return ("import torch\nfrom safetensors.torch import load_file\nfrom transformers import AutoModel, AutoTokenizer\n\n"
            'model_dir = "RUN_DIR/model"\n'
            "tokenizer = AutoTokenizer.from_pretrained(model_dir)\n"
            "backbone = AutoModel.from_pretrained(model_dir, add_pooling_layer=False).eval()\n"
            'head = load_file(f"{model_dir}/tunelab_head.safetensors")\n' + _inputs(config) +
            "with torch.no_grad():\n    states = backbone(**inputs).last_hidden_state\n" + pool + norm +
            '    logits = pooled @ head["proj.weight"].T + head["proj.bias"]\n'
            f"print({_READ[config.task]})\n")


def _peft(config: RunConfig, labels: list[str], base_dir: str) -> str:
    auto = _auto_class(config)
    outputs = 1 if config.task == "regression" else len(labels)
    return (f"import torch\nfrom peft import PeftModel\nfrom transformers import AutoTokenizer, {auto}\n\n"
            f"base = {auto}.from_pretrained({base_dir!r}, num_labels={outputs})\n"
            'model = PeftModel.from_pretrained(base, "RUN_DIR/model").eval()\n'
            'tokenizer = AutoTokenizer.from_pretrained("RUN_DIR/model")\n' + _inputs(config) +
            "with torch.no_grad():\n    logits = model(**inputs).logits\n"
            f"print({_READ[config.task]})\n")


def _tunelab(images: bool) -> str:
    if images:
        return ("from tunelab.serving.predict import predict_rows\nfrom tunelab.serving.predictor import load_predictor\n\n"
                'predictor = load_predictor("RUN_DIR")\nprint(predict_rows(predictor, input_path="images.csv"))\n')
    return ("from tunelab.serving.predict import predict_rows\nfrom tunelab.serving.predictor import load_predictor\n\n"
            f'predictor = load_predictor("RUN_DIR")\nprint(predict_rows(predictor, texts=["{_EXAMPLE}"]))\n')


def _preference(config: RunConfig, adapter: bool, base_dir: str) -> list[tuple[str, str]]:
    """A preference run's model is a causal LM (base + adapter, or whole): it writes replies; tunelab scores pairs."""
    load = (f'base = AutoModelForCausalLM.from_pretrained({base_dir!r})\n'
            'model = PeftModel.from_pretrained(base, "RUN_DIR/model").eval()\n' if adapter else
            'model = AutoModelForCausalLM.from_pretrained("RUN_DIR/model").eval()\n')
    code = ("import torch\n" + ("from peft import PeftModel\n" if adapter else "") +
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n" + load +
            'tokenizer = AutoTokenizer.from_pretrained("RUN_DIR/model")\n'
            f'text = tokenizer.apply_chat_template([{{"role": "user", "content": "{_EXAMPLE}"}}], tokenize=False, '
            "add_generation_prompt=True)\n"
            'inputs = tokenizer([text], add_special_tokens=False, return_tensors="pt")\n'
            "with torch.no_grad():\n    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)\n"
            'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))\n')
    pairs = ("from tunelab.serving.predict import predict_rows\nfrom tunelab.serving.predictor import load_predictor\n\n"
             'predictor = load_predictor("RUN_DIR")\n'
             "# pairs.jsonl: one {\"prompt\", \"chosen\", \"rejected\"} per line; prediction: log p(chosen) - log p(rejected)\n"
             'print(predict_rows(predictor, input_path="pairs.jsonl"))\n')
    return [(f"With {'peft' if adapter else 'transformers'}, the tuned causal LM writing a reply:", code),
            ("With tunelab, the tuned model's preference between two replies (as `tunelab predict --input`):", pairs)]
