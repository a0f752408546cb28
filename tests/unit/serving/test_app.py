"""The HTTP API in process (httpx over ASGI, the app's lifespan run), on fake models: routes, output shapes per
task, every 4xx, 429 from a full queue, a failing batch, /health while a batch runs, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Optional

import httpx
import numpy as np
import pytest

from tunelab.serving.app import ServeSettings, create_app
from tunelab.serving.backend import ModelInfo
from tunelab.tasks.base import Predictions


class FakeModel:
    """Answers by text length: classification picks labels[len % 2]; `gate` holds each call until set; a text
    "boom" makes the call fail."""

    def __init__(self, name: str, task: str = "classification", labels: tuple[str, ...] = ("neg", "pos"),
                 gate: Optional[threading.Event] = None) -> None:
        self.info = ModelInfo(name=name, task=task, labels=list(labels), base="tiny-bert", kind="run", source="x",
                              versions={"tunelab": "0.1.0"})
        self.gate, self.calls = gate, []

    def predict(self, records: list[Any]) -> Predictions:
        self.calls.append(len(records))
        if self.gate is not None:
            self.gate.wait(10)
        if any(r.text == "boom" for r in records):
            raise RuntimeError("the forward pass broke")
        n, task = len(records), self.info.task
        if task == "token_classification":
            return Predictions([tuple("B-X" if w.istitle() else "O" for w in r.words) for r in records], None, None)
        if task == "regression":
            return Predictions([float(len(r.text)) for r in records], np.ones((n, 1)), None)
        probs = np.array([[0.25, 0.75] if len(r.text) % 2 else [0.75, 0.25] for r in records])
        if task == "multilabel":
            return Predictions([tuple(self.info.labels[1:]) for _ in records], probs, None)
        return Predictions([self.info.labels[int(p[1] > 0.5)] for p in probs], probs, None)

    def generate(self, records: list[Any], max_new_tokens: Optional[int]) -> tuple[list[str], list[bool]]:
        return [f"re: {r.text}"[: max_new_tokens or 100] for r in records], [True] * len(records)


def serve(models: dict[str, FakeModel], scenario, settings: ServeSettings = ServeSettings(), load=None):
    """Run `scenario(client)` against the app over `models`, its lifespan started and the models loaded."""
    async def main() -> Any:
        app = create_app(load or (lambda: models), settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=10) as client:
                for _ in range(200):
                    if app.state.tunelab.models is not None or app.state.tunelab.error or load is not None:
                        break
                    await asyncio.sleep(0.01)
                return await scenario(client)
    return asyncio.run(main())


def post(client: httpx.AsyncClient, body: Any, path: str = "/v1/predict", **kw: Any):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={"content-type": "application/json"}, **kw)


def test_predict_models_and_adapters() -> None:
    models = {"news": FakeModel("news"), "sport": FakeModel("sport", labels=("home", "away"))}

    async def scenario(client):
        one = await post(client, {"inputs": "odd"})
        two = await post(client, {"inputs": ["odd", "even"], "adapter": "sport"})
        listed = await client.get("/v1/models")
        return one, two, listed
    one, two, listed = serve(models, scenario)
    assert one.status_code == 200 and one.json() == {"model": "news", "outputs": [
        {"label": "pos", "scores": {"neg": 0.25, "pos": 0.75}}]}
    assert [o["label"] for o in two.json()["outputs"]] == ["away", "home"] and two.json()["model"] == "sport"
    cards = listed.json()["models"]
    assert [(c["name"], c["default"], c["labels"], c["task"], c["base"]) for c in cards] == [
        ("news", True, ["neg", "pos"], "classification", "tiny-bert"), ("sport", False, ["home", "away"],
                                                                         "classification", "tiny-bert")]
    assert cards[0]["versions"] == {"tunelab": "0.1.0"} and cards[0]["generative"] is False


def test_outputs_of_the_other_tasks() -> None:
    models = {"ner": FakeModel("ner", "token_classification", ("O", "B-X")), "reg": FakeModel("reg", "regression"),
              "ml": FakeModel("ml", "multilabel", ("a", "b", "c")), "chat": FakeModel("chat", "instruction_tuning")}

    async def scenario(client):
        return [(await post(client, {"inputs": ["Ann met Bob here"], "adapter": name})).json()["outputs"][0]
                for name in ("ner", "reg", "ml")] + [
            (await post(client, {"inputs": ["hello"], "adapter": "chat", "max_new_tokens": 5}, "/v1/generate")).json(),
            (await post(client, {"inputs": ["hello"], "adapter": "ner"}, "/v1/generate"))]
    ner, reg, ml, chat, refused = serve(models, scenario)
    assert ner == {"words": ["Ann", "met", "Bob", "here"], "tags": ["B-X", "O", "B-X", "O"]}
    assert reg == {"value": 16.0}
    assert ml["labels"] == ["b", "c"] and set(ml["scores"]) == {"a", "b"}
    assert chat == {"model": "chat", "outputs": [{"text": "re: h", "stopped": True}]}
    assert refused.status_code == 422 and "POST /v1/predict" in refused.json()["error"]


BAD = [
    (b"not json", 422, "not valid JSON"),
    ([1, 2], 422, "valid dictionary"),
    ({"inputs": [1, "a"]}, 422, "inputs.0"),
    ({"inputs": []}, 422, "at least 1 item"),
    ({"inputs": ["fine", "  "]}, 422, "input #1 is empty"),
    ({"inputs": ""}, 422, "input #0 is empty"),
    ({"texts": ["a"]}, 422, "inputs: Field required"),
    ({"inputs": ["a"], "adapter": 3}, 422, "adapter"),
    ({"inputs": ["a" * 101]}, 413, "at most 100"),
    ({"inputs": ["a"] * 5}, 413, "at most 4"),
    ({"inputs": ["a"], "adapter": "nope"}, 404, "served: m"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD, ids=[f"{s}-{m[:16]}" for _, s, m in BAD])
def test_bad_requests_get_a_clear_4xx(body: Any, status: int, message: str) -> None:
    async def scenario(client):
        bad = await post(client, body)
        return bad, await post(client, {"inputs": ["still serving"]})
    bad, after = serve({"m": FakeModel("m")}, scenario, ServeSettings(max_inputs=4, max_chars=100))
    assert bad.status_code == status, bad.text
    assert set(bad.json()) == {"error", "error_type"} and message in bad.json()["error"], bad.json()
    assert after.status_code == 200


def test_a_body_over_the_limit_is_413_before_it_is_parsed() -> None:
    async def scenario(client):
        return await post(client, {"inputs": ["x" * 5000]})
    answer = serve({"m": FakeModel("m")}, scenario, ServeSettings(max_body_bytes=1000))
    assert answer.status_code == 413 and answer.json()["error_type"] == "too_large"


def test_full_queue_429_and_health_answers_while_a_batch_runs() -> None:
    gate = threading.Event()

    async def scenario(client):
        running = asyncio.ensure_future(post(client, {"inputs": ["a"]}))
        await asyncio.sleep(0.1)
        waiting = asyncio.ensure_future(post(client, {"inputs": ["b"]}))
        await asyncio.sleep(0.1)
        refused = await post(client, {"inputs": ["c"]})
        health = await client.get("/health")  # the model is busy in the worker thread
        gate.set()
        return refused, health, await running, await waiting
    refused, health, running, waiting = serve({"m": FakeModel("m", gate=gate)}, scenario,
                                              ServeSettings(max_batch=1, max_queue=1))
    assert refused.status_code == 429 and refused.json()["error_type"] == "overloaded"
    assert health.status_code == 200 and health.json() == {"status": "ok", "models": ["m"]}
    assert running.status_code == waiting.status_code == 200


def test_a_failing_batch_fails_only_its_requests() -> None:
    async def scenario(client):
        broken = await post(client, {"inputs": ["boom"]})
        return broken, await post(client, {"inputs": ["fine"]})
    broken, fine = serve({"m": FakeModel("m")}, scenario)
    assert broken.status_code == 500 and broken.json() == {
        "error": "inference failed for this request's batch: RuntimeError: the forward pass broke",
        "error_type": "backend"}
    assert fine.status_code == 200


def test_health_is_503_until_the_model_is_loaded_or_when_loading_failed() -> None:
    loaded = threading.Event()

    def slow_load():
        loaded.wait(10)
        return {"m": FakeModel("m")}

    async def scenario(client):
        before = [await client.get("/health"), await post(client, {"inputs": ["a"]}), await client.get("/v1/models")]
        loaded.set()
        for _ in range(200):
            after = await client.get("/health")
            if after.status_code == 200:
                break
            await asyncio.sleep(0.01)
        return before, after
    (health, predict, listed), after = serve({}, scenario, load=slow_load)
    assert health.status_code == 503 and health.json() == {"status": "loading", "models": []}
    assert predict.status_code == listed.status_code == 503 and "still loading" in predict.json()["error"]
    assert after.status_code == 200

    def broken_load():
        raise OSError("no such file")

    async def failed(client):
        await asyncio.sleep(0.05)
        return await client.get("/health")
    answer = serve({}, failed, load=broken_load)
    assert answer.status_code == 503 and answer.json()["status"] == "failed" and "no such file" in answer.json()["error"]


def test_metrics_and_openapi() -> None:
    async def scenario(client):
        await post(client, {"inputs": ["a", "bb", "ccc"]})
        await post(client, {"inputs": []})
        await client.get("/nowhere")
        return await client.get("/metrics"), await client.get("/openapi.json"), await client.get("/docs")
    metrics, openapi, docs = serve({"m": FakeModel("m")}, scenario)
    text = metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    for line in ('tunelab_requests_total{route="/v1/predict",status="200"} 1.0',
                 'tunelab_requests_total{route="/v1/predict",status="422"} 1.0',
                 'tunelab_requests_total{route="other",status="404"} 1.0',
                 'tunelab_inputs_total{route="/v1/predict"} 3.0', "tunelab_batch_size_sum 3.0",
                 'tunelab_request_seconds_count{route="/v1/predict"} 2.0', "tunelab_queue_depth 0.0"):
        assert line in text, line
    schemas = openapi.json()["components"]["schemas"]
    assert {"PredictRequest", "PredictResponse", "GenerateRequest", "ErrorResponse", "ModelsResponse"} <= set(schemas)
    assert "429" in openapi.json()["paths"]["/v1/predict"]["post"]["responses"]
    assert docs.status_code == 200


def test_draining_refuses_new_work_with_503_but_metrics_answer() -> None:
    async def scenario(client):
        client._transport.app.state.tunelab.draining = True
        return await post(client, {"inputs": ["a"]}), await client.get("/health"), await client.get("/metrics")
    refused, health, metrics = serve({"m": FakeModel("m")}, scenario)
    assert refused.status_code == 503 and "shutting down" in refused.json()["error"]
    assert refused.headers["connection"] == "close"
    assert health.status_code == 503 and health.json()["status"] == "draining" and metrics.status_code == 200


def test_real_adapters_on_one_base_answer_as_tunelab_predict(adapter_run) -> None:
    from tunelab.serving.adapters import parse_adapter_specs, shared_base_count
    from tunelab.serving.backend import load_models
    from tunelab.serving.predict import predict_rows

    a = adapter_run({"name": "lora"}, name="a", seed=1)
    b = adapter_run({"name": "lora", "lora": {"rank": 2}}, name="b", seed=2, labels=("x", "y"))
    models = load_models(a, parse_adapter_specs([f"second={b}"]))
    assert list(models) == ["a", "second"] and [m.info.kind for m in models.values()] == ["adapter", "adapter"]
    assert shared_base_count({n: m.run for n, m in models.items()}) == shared_base_count({"a": models["a"].run})
    texts = ["good movie", "awful plot and bad acting"]

    async def scenario(client):
        return [(await post(client, {"inputs": texts, "adapter": name})).json() for name in (None, "second")]
    first, second = serve(models, scenario)
    for answer, run_dir in ((first, a), (second, b)):
        rows = predict_rows(run_dir, texts=texts)
        assert [o["label"] for o in answer["outputs"]] == [r["prediction"] for r in rows]
        assert [o["scores"] for o in answer["outputs"]] == [r["probabilities"] for r in rows]
    with pytest.raises(Exception, match="the name is taken by RUN_DIR"):
        load_models(a, parse_adapter_specs([f"a={b}"]))


def test_an_onnx_export_serves_as_tunelab_predict_of_it(tiny_config: dict, tmp_path) -> None:
    """`tunelab serve EXPORT_DIR`: the ONNX model in onnxruntime answers what `tunelab predict EXPORT_DIR` does."""
    pytest.importorskip("onnxruntime")
    from tests.conftest import train_via_cli
    from tunelab.export.formats import export_run
    from tunelab.serving.backend import check_servable, load_models
    from tunelab.serving.predict import predict_rows

    train_via_cli(tiny_config, folder=tmp_path)
    export_run(tmp_path / "run", tmp_path / "onnx", format="onnx")
    assert check_servable(tmp_path / "onnx", "RUN_DIR") == "classification"
    models = load_models(tmp_path / "onnx", {})
    assert [m.info.kind for m in models.values()] == ["onnx"]
    texts = ["good movie", "awful plot and bad acting"]

    async def scenario(client):
        return (await post(client, {"inputs": texts})).json()
    answer = serve(models, scenario)
    rows = predict_rows(tmp_path / "onnx", texts=texts)
    assert [o["label"] for o in answer["outputs"]] == [r["prediction"] for r in rows]
    assert [o["scores"] for o in answer["outputs"]] == [r["probabilities"] for r in rows]
