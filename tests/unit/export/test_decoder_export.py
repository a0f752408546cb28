"""`tunelab export` of an instruction-tuned decoder (a tiny random Llama): the one-step graph with its key/value
cache, checked on the run's test prompts in onnxruntime and torch.jit, full and LoRA (merged); the export
writes the run's own replies through `predict`, `eval` and the server's backend; the decoding loop is the one
transformers' `generate` runs; a failed check writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.unit.tasks.test_instruction import config_for, qa_rows, write_jsonl
from tunelab.errors import TunelabError
from tunelab.export import export_run
from tunelab.serving.backend import text_records
from tunelab.serving.predict import evaluate_file, generate_replies

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

PROMPTS = ["what colour is the sky", "say hello", "what colour is the grass", "a long story about cats and dogs"]


@pytest.fixture(scope="module")
def chat_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A full and a LoRA instruction run on the tiny Llama, trained once for the module (fp32)."""
    from tests.unit.tasks.test_instruction import make_tiny_llama
    from tunelab.orchestration.train import train as run_training

    folder = tmp_path_factory.mktemp("chat")
    model = make_tiny_llama(folder / "tiny-llama")
    data = write_jsonl(folder / "qa.jsonl", qa_rows(30))
    runs = {}
    for name, strategy in (("full", {"name": "full"}), ("lora", {"name": "lora", "lora": {"rank": 4, "target_modules": ["q_proj", "v_proj"]}})):
        run_training(config_for(model, data, folder / name, strategy=strategy, train__precision="fp32",
                                train__epochs=4, generation={"max_new_tokens": 6}))
        runs[name] = folder / name
    runs["data"] = data
    return runs


def _replies(source: Path) -> list[str]:
    return generate_replies(source, text_records(PROMPTS, "instruction_tuning", "test"))[0]


@pytest.mark.parametrize("run_name, fmt", [("full", "onnx"), ("full", "torchscript"), ("lora", "onnx")])
def test_decoder_exports_with_its_cache_and_writes_the_runs_replies(run_name: str, fmt: str,
                                                                   chat_runs: dict[str, Path], tmp_path: Path) -> None:
    run, out = chat_runs[run_name], tmp_path / "export"
    meta = export_run(run, out, format=fmt)
    parity = meta["parity"]
    assert parity["passed"] and parity["data"].startswith("test split") and parity["decoding_steps"] > 0
    assert parity["max_abs_logit_diff"] <= 1e-4 and parity["decision_agreement"] == 1.0
    assert parity["reply_agreement"] == 1.0 and all(abs(v) < 1e-9 for v in parity["metric_delta"].values())
    written = json.loads((out / "export.json").read_text())
    assert written["decoder"]["layers"] == 2 and written["decoder"]["kv_heads"] == 2
    assert written["adapter"] == ("merged (lora)" if run_name == "lora" else "none")
    assert _replies(out) == _replies(run)  # batched, left-padded prompts of different lengths
    metrics = evaluate_file(out, chat_runs["data"])
    assert metrics["exact_match"] == evaluate_file(run, chat_runs["data"])["exact_match"]
    assert "perplexity" not in metrics  # next-token logits only: said in the docs, not guessed


def test_the_decoding_loop_is_generates(chat_runs: dict[str, Path]) -> None:
    """greedy_generate over the PyTorch one-step module gives transformers' `generate` tokens, row by row."""
    from tunelab.artifacts.model_io import load_run
    from tunelab.export.decoder import DecoderStep, decoder_spec
    from tunelab.inference.decoding import empty_cache, greedy_generate
    from tunelab.models.causal_lm import left_padded

    run = load_run(chat_runs["full"])
    tok = run.tokenizer
    prompts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_dict=False) for p in PROMPTS]
    ids, mask = left_padded(prompts, tok.pad_token_id)
    net = run.model.network.eval()
    spec, step = decoder_spec(net), DecoderStep(net).eval()
    ours = greedy_generate(lambda i, m, c: (lambda o: (o[0], list(o[1:])))(step(i, m, *c)), ids, mask,
                           empty_cache(len(prompts), spec.layers, spec.kv_heads, spec.head_dim), max_new_tokens=8,
                           stop_ids=[tok.eos_token_id], pad_id=tok.pad_token_id)
    with torch.no_grad():
        theirs = net.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
                              eos_token_id=[tok.eos_token_id], pad_token_id=tok.pad_token_id)
    assert ours[:, :theirs.shape[1]].tolist() == theirs.tolist()
    assert (ours[:, theirs.shape[1]:] == tok.pad_token_id).all()  # generate stops when every row has


def test_decoder_parity_failure_writes_nothing(chat_runs: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.inference.exported import ExportedDecoder

    real = ExportedDecoder.step

    def shifted(self, ids, mask, cache):
        logits, grown = real(self, ids, mask, cache)
        return logits + 1e-3, grown

    monkeypatch.setattr(ExportedDecoder, "step", shifted)
    out = tmp_path / "export"
    with pytest.raises(TunelabError, match=r"largest \|Δlogit\| is 0\.001 .*reply position 0") as caught:
        export_run(chat_runs["full"], out, format="onnx")
    assert "nothing was written" in str(caught.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_served_decoder_export_replies_as_the_run(chat_runs: dict[str, Path], tmp_path: Path) -> None:
    """`tunelab serve EXPORT_DIR`: `/v1/generate` on the ONNX decoder answers what the run directory writes."""
    from tests.unit.serving.test_app import post, serve
    from tunelab.serving.backend import load_models

    export_run(chat_runs["lora"], tmp_path / "onnx", format="onnx")
    models = load_models(tmp_path / "onnx", {})
    assert [(m.info.kind, m.info.generative) for m in models.values()] == [("onnx", True)]

    async def scenario(client):
        return (await post(client, {"inputs": PROMPTS}, "/v1/generate")).json()
    answer = serve(models, scenario)
    assert [o["text"] for o in answer["outputs"]] == _replies(chat_runs["lora"])
