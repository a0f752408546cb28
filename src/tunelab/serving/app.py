"""The HTTP API (FastAPI): health, models, predict, generate and metrics over a micro-batcher.

`create_app(load, settings)` returns the app; `load()` builds the served models and runs in a background
thread once the app starts, so `GET /health` answers 503 (loading) until they are ready, then 200. Every error
answer is `{"error": ..., "error_type": ...}` with the codes of Hugging Face text-embeddings-inference:
413 too large, 422 unprocessable, 404 unknown adapter, 429 queue full, 503 not ready / shutting down, 500 a
forward pass that failed (that batch's requests only).
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Hashable, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from tunelab.serving.backend import ServedModel, keep_cast_weights, text_records
from tunelab.serving.batching import MicroBatcher, Overloaded, Stopped
from tunelab.serving.guard import Guard, error_body
from tunelab.serving.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from tunelab.serving.outputs import generation_outputs, prediction_outputs
from tunelab.serving.schemas import (ErrorResponse, GenerateRequest, HealthResponse, ModelsResponse, PredictRequest,
                                     PredictResponse)

__all__ = ["ServeSettings", "ApiError", "create_app"]

log = logging.getLogger("tunelab.serve")
ROUTES = {"/health", "/v1/models", "/v1/predict", "/v1/generate", "/metrics"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (404, "Unknown adapter."), (413, "Too many inputs, a text too long, or a body too large."),
        (422, "Not JSON, or not the request's shape (wrong types, an empty list, an empty text)."),
        (429, "The queue is full: retry later."), (500, "The forward pass of this request's batch failed."),
        (503, "The model is still loading, or the server is shutting down."))}


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = 32             # inputs per forward pass; 1 turns micro-batching off
    max_wait_ms: float = 5.0        # how long a batch waits for more requests
    max_queue: int = 256            # requests waiting for a batch; one more gets 429
    max_inputs: int = 64            # texts per request (413 above)
    max_chars: int = 20_000         # characters per text (413 above)
    max_body_bytes: int = 4_000_000  # request body (413 above)


class ApiError(Exception):
    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


class _State:
    """What the routes share: the models (None while loading), the batcher, the metrics, the drain flag."""

    def __init__(self, load: Callable[[], dict[str, ServedModel]], settings: ServeSettings,
                 on_load_error: Optional[Callable[[BaseException], None]]) -> None:
        self.load, self.settings, self.on_load_error = load, settings, on_load_error
        self.models: Optional[dict[str, ServedModel]] = None
        self.error: Optional[str] = None
        self.draining = False
        self.batcher = MicroBatcher(self.run_batch, max_batch=settings.max_batch, max_queue=settings.max_queue,
                                    max_wait_s=settings.max_wait_ms / 1000, thread_init=keep_cast_weights)
        self.metrics = ServerMetrics(ROUTES, lambda: self.batcher.depth)
        self.batcher.on_batch = self.metrics.observe_batch

    def load_models(self) -> None:
        try:
            self.models = self.load()
            log.info("ready: %s", ", ".join(self.models))
        except BaseException as err:  # noqa: BLE001 - reported by /health and to the caller
            self.error = f"{type(err).__name__}: {err}"
            log.error("loading the model failed: %s", self.error)
            if self.on_load_error is not None:
                self.on_load_error(err)

    def model(self, name: Optional[str]) -> ServedModel:
        if self.models is None:
            raise ApiError(503, f"the model is not loaded ({self.error or 'still loading'}); retry when GET "
                           "/health answers 200", "unavailable")
        if name is None:
            return next(iter(self.models.values()))
        if name not in self.models:
            raise ApiError(404, f"adapter {name!r} is not served; served: {', '.join(self.models)}", "not_found")
        return self.models[name]

    def check_size(self, inputs: list[str]) -> None:
        limit = self.settings
        if len(inputs) > limit.max_inputs:
            raise ApiError(413, f"{len(inputs)} inputs in one request; at most {limit.max_inputs}: split the "
                           "request", "too_large")
        long = next((i for i, text in enumerate(inputs) if len(text) > limit.max_chars), None)
        if long is not None:
            raise ApiError(413, f"input #{long} has {len(inputs[long])} characters; at most {limit.max_chars}",
                           "too_large")

    async def submit(self, key: Hashable, records: list[Any]) -> list[dict[str, Any]]:
        try:
            return await self.batcher.submit(key, records)
        except Overloaded as err:
            raise ApiError(429, f"the server is overloaded: {err}; retry later", "overloaded") from None
        except Stopped as err:
            raise ApiError(503, f"{err}; retry on another instance", "unavailable") from None
        except Exception as err:  # noqa: BLE001 - the batch's forward pass failed
            log.exception("a batch failed")
            raise ApiError(500, f"inference failed for this request's batch: {type(err).__name__}: {err}",
                           "backend") from None

    def run_batch(self, key: Hashable, records: list[Any]) -> list[dict[str, Any]]:
        """In the worker thread: one forward pass (or one generation) for a whole batch."""
        name, route, max_new_tokens = key  # type: ignore[misc]
        model = self.models[name]  # type: ignore[index]
        if route == "generate":
            return generation_outputs(*model.generate(records, max_new_tokens))
        return prediction_outputs(model.info.task, model.predict(records), records, model.info.labels)


def create_app(load: Callable[[], dict[str, ServedModel]], settings: ServeSettings = ServeSettings(), *,
               on_load_error: Optional[Callable[[BaseException], None]] = None) -> FastAPI:
    state = _State(load, settings, on_load_error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.batcher.start()
        threading.Thread(target=state.load_models, name="tunelab-load", daemon=True).start()
        yield
        state.draining = True
        await state.batcher.stop()

    app = FastAPI(title="tunelab serve", lifespan=lifespan, description="Predictions of tunelab runs: one or "
                  "several adapters on one base, micro-batched.")
    app.state.tunelab = state
    app.add_middleware(Guard, state=state)
    _add_error_handlers(app)
    _add_info_routes(app, state)
    _add_model_routes(app, state)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(error_body(err.message, err.error_type), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(_validation_message(err), "validation"), status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(error_body(f"internal error: {type(err).__name__}: {err}", "backend"), status_code=500)


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
        if problem.get("type") == "json_invalid":
            parts.append("the body is not valid JSON; send {\"inputs\": [\"a text\", ...]}")
        else:
            parts.append(f"{where}: {str(problem.get('msg', 'invalid')).removeprefix('Value error, ')}")
    return "; ".join(parts)


def _add_info_routes(app: FastAPI, state: _State) -> None:
    @app.get("/health", response_model=HealthResponse, response_model_exclude_none=True,
             responses={503: {"model": HealthResponse, "description": "Loading, failed or shutting down."}})
    async def health() -> Any:
        if state.draining or state.models is None:
            status = "draining" if state.draining else "failed" if state.error else "loading"
            return JSONResponse(HealthResponse(status=status, error=state.error).model_dump(exclude_none=True),
                                status_code=503)
        return HealthResponse(status="ok", models=list(state.models))

    @app.get("/v1/models", response_model=ModelsResponse, responses=_ERRORS)
    async def models() -> Any:
        state.model(None)  # 503 while loading
        served = list(state.models.values())  # type: ignore[union-attr]
        return {"models": [{**m.info.__dict__, "generative": m.info.generative, "default": i == 0}
                           for i, m in enumerate(served)]}

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _add_model_routes(app: FastAPI, state: _State) -> None:
    @app.post("/v1/predict", response_model=PredictResponse, response_model_exclude_none=True, responses=_ERRORS)
    async def predict(body: PredictRequest) -> Any:
        """One output per input: label and scores (classification), labels and scores (multilabel), value
        (regression), words and tags (token_classification), text (instruction_tuning)."""
        model = state.model(body.adapter)
        state.check_size(body.inputs)
        records = text_records(body.inputs, model.info.task, "request input")
        state.metrics.inputs.labels(route="/v1/predict").inc(len(records))
        return {"model": model.info.name, "outputs": await state.submit((model.info.name, "predict", None), records)}

    @app.post("/v1/generate", response_model=PredictResponse, response_model_exclude_none=True, responses=_ERRORS)
    async def generate(body: GenerateRequest) -> Any:
        """Greedy replies of an instruction-tuned run, with the model's chat template."""
        model = state.model(body.adapter)
        if not model.info.generative:
            raise ApiError(422, f"{model.info.name} is a {model.info.task} run; POST /v1/predict answers it",
                           "validation")
        state.check_size(body.inputs)
        records = text_records(body.inputs, model.info.task, "request input", system=body.system)
        state.metrics.inputs.labels(route="/v1/generate").inc(len(records))
        key = (model.info.name, "generate", body.max_new_tokens)
        return {"model": model.info.name, "outputs": await state.submit(key, records)}
