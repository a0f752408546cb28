"""Request and response bodies of the HTTP API (pydantic): they validate requests (422 on a wrong shape) and
give the OpenAPI document at /docs. Size limits (413) are the server's settings, checked by the app."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

__all__ = ["PredictRequest", "GenerateRequest", "Output", "PredictResponse", "ModelCard", "ModelsResponse",
           "HealthResponse", "ErrorResponse"]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"inputs": ["Shares fell sharply on Monday", "The striker scored twice"]}]})

    inputs: list[StrictStr] = Field(min_length=1, description="The texts (a single string is one input); "
                                    "each gets one output, in order.")
    adapter: Optional[StrictStr] = Field(None, description="The served model (adapter) to use, by the name "
                                         "GET /v1/models lists; default: the first one.")

    @model_validator(mode="before")
    @classmethod
    def _one_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("inputs"), str):
            return {**data, "inputs": [data["inputs"]]}
        return data

    @field_validator("inputs")
    @classmethod
    def _no_empty_text(cls, inputs: list[str]) -> list[str]:
        empty = [i for i, text in enumerate(inputs) if not text.strip()]
        if empty:
            raise ValueError(f"input #{empty[0]} is empty or blank; give a text to predict for")
        return inputs


class GenerateRequest(PredictRequest):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"inputs": ["Write a headline for: Shares fell sharply on Monday"], "max_new_tokens": 32}]})

    system: Optional[StrictStr] = Field(None, description="A system message before each prompt.")
    max_new_tokens: Optional[StrictInt] = Field(None, ge=1, le=1024, description="Default: the run's "
                                                "generation.max_new_tokens.")


class Output(BaseModel):
    """One input's result; the fields present depend on the model's task."""

    label: Optional[str] = Field(None, description="classification: the predicted class.")
    labels: Optional[list[str]] = Field(None, description="multilabel: the predicted classes.")
    scores: Optional[dict[str, float]] = Field(None, description="classification, multilabel: probability of "
                                               "every class (6 decimals).")
    value: Optional[float] = Field(None, description="regression: the predicted value.")
    words: Optional[list[str]] = Field(None, description="token_classification: the input split on whitespace.")
    tags: Optional[list[str]] = Field(None, description="token_classification: one tag per word.")
    text: Optional[str] = Field(None, description="instruction_tuning: the reply.")
    stopped: Optional[bool] = Field(None, description="generate: the reply ended on its own (an end-of-turn "
                                    "token), not at max_new_tokens.")


class PredictResponse(BaseModel):
    model: str = Field(description="The model that answered.")
    outputs: list[Output]


class ModelCard(BaseModel):
    name: str
    task: str
    labels: list[str]
    base: str = Field(description="The base model the run was trained from.")
    kind: str = Field(description="run, or adapter (adapters share one base in memory).")
    generative: bool = Field(description="Answers POST /v1/generate.")
    default: bool = Field(description="Used when a request names no adapter.")
    versions: dict[str, Any] = Field(description="From the run's manifest: created, base_sha256, package versions.")


class ModelsResponse(BaseModel):
    models: list[ModelCard]


class HealthResponse(BaseModel):
    status: Literal["ok", "loading", "failed", "draining"]
    models: list[str] = []
    error: Optional[str] = None


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong and what to do.")
    error_type: Literal["validation", "too_large", "not_found", "overloaded", "unavailable", "backend"]
