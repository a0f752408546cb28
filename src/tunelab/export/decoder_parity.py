"""Parity of an exported decoder LM with its run, on the run's test prompts, before the export gets its name.

Two checks. Logits: the PyTorch run writes its greedy replies step by step through the same one-step signature
(export/decoder.py), and the export is fed exactly those tokens (teacher forcing), so every step compares the
two runtimes on equal inputs: the largest |Δlogit| over all steps, and the share of steps whose argmax agrees
(what int8 is judged on). Replies: the export then decodes on its own through the loop `tunelab predict` and
`serve` use, and its replies are compared with the run's own `generate` replies, with the generation metrics of
both on a labelled split.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from tunelab.artifacts.model_io import LoadedRun
from tunelab.export.decoder import DecoderSpec, DecoderStep
from tunelab.export.parity import ParityData
from tunelab.inference.decoding import empty_cache, greedy_generate
from tunelab.inference.exported import ExportedDecoder
from tunelab.models.causal_lm import left_padded
from tunelab.tasks.base import Task
from tunelab.tasks.instruction import generation_pad_id, stop_token_ids

__all__ = ["measure_decoder_parity", "PARITY_NEW_TOKENS"]

PARITY_NEW_TOKENS = 32   # tokens per reply in the check (fewer if the run's generation.max_new_tokens is lower)
_CPU = torch.device("cpu")


def _torch_step(module: DecoderStep) -> Callable:
    def step(ids: torch.Tensor, mask: torch.Tensor, cache: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = module(ids, mask, *cache)
        return out[0], list(out[1:])
    return step


def _logit_parity(reference: DecoderStep, exported: ExportedDecoder, prompts: list[list[int]], spec: DecoderSpec,
                  run: LoadedRun, new_tokens: int, where: list[str]) -> dict[str, Any]:
    stops, pad = stop_token_ids(run.tokenizer), generation_pad_id(run.tokenizer)
    batch = run.config.train.evaluation_batch_size
    largest, at, agreed, steps = 0.0, {"example": "", "output": ""}, 0, 0
    for start in range(0, len(prompts), batch):
        ids, mask = left_padded(prompts[start:start + batch], pad)
        ours: list[torch.Tensor] = []
        theirs: list[torch.Tensor] = []
        cache = lambda: empty_cache(ids.shape[0], spec.layers, spec.kv_heads, spec.head_dim)  # noqa: E731
        written = greedy_generate(_torch_step(reference), ids, mask, cache(), max_new_tokens=new_tokens,
                                  stop_ids=stops, pad_id=pad, on_logits=ours.append)[:, ids.shape[1]:]
        greedy_generate(exported.step, ids, mask, cache(), max_new_tokens=new_tokens, stop_ids=stops, pad_id=pad,
                        forced=written, on_logits=theirs.append)
        live = torch.ones(ids.shape[0], dtype=torch.bool)  # rows that have not stopped before this step
        for index, (ref, got) in enumerate(zip(ours, theirs)):
            diff = (ref - got).abs()[live]
            if diff.numel() and float(diff.max()) > largest:
                row, token = divmod(int(diff.argmax()), diff.shape[-1])
                example = int(live.nonzero()[row])
                largest = float(diff.max())
                at = {"example": where[start + example], "output": f"token id {token} at reply position {index}"}
            agreed += int((ref.argmax(-1) == got.argmax(-1))[live].sum())
            steps += int(live.sum())
            live &= ~torch.isin(written[:, index], torch.tensor(stops))
    return {"max_abs_logit_diff": largest, "largest_at": at, "decision_agreement": agreed / max(steps, 1),
            "decoding_steps": steps}


def measure_decoder_parity(run: LoadedRun, exported: ExportedDecoder, spec: DecoderSpec, data: ParityData,
                           task: Task) -> dict[str, Any]:
    """The figures `check_parity` judges (largest |Δlogit| and where, step agreement), plus reply agreement and
    the generation metrics of both on a labelled split."""
    generation = run.config.generation
    new_tokens = min(generation.max_new_tokens, PARITY_NEW_TOKENS)
    generation = generation.model_copy(update={"max_new_tokens": new_tokens})
    prompts = task.prompt_ids(data.split)
    where = [r.where for r in data.split.records] or [f"probe example {i}" for i in range(len(prompts))]
    with torch.no_grad():
        figures = _logit_parity(DecoderStep(run.model.network).eval(), exported, prompts, spec, run, new_tokens, where)
    batch = run.config.train.evaluation_batch_size
    replies = [task.generate(model, data.split, run.tokenizer, generation, device=_CPU, batch_size=batch)
               for model in (run.model, exported)]
    (ref_texts, ref_stopped), (got_texts, got_stopped) = replies
    figures = {"data": data.source, "examples": len(prompts), **figures, "reply_tokens": new_tokens,
               "reply_agreement": sum(a == b for a, b in zip(ref_texts, got_texts)) / max(len(prompts), 1)}
    if data.split.records and all(r.label for r in data.split.records):
        before = task.generation_metrics(data.split.records, ref_texts, ref_stopped)
        after = task.generation_metrics(data.split.records, got_texts, got_stopped)
        figures["metrics_pytorch"], figures["metrics_export"] = before, after
        figures["metric_delta"] = {k: after[k] - before[k] for k in before if k in after}
    return figures
