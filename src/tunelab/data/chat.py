"""Instruction data: JSON Lines of `{"prompt", "response"}` or chat `{"messages": [...]}`; preference pairs:
`{"prompt", "chosen", "rejected"}` (or `{"messages", "chosen", "rejected"}`, the conversation before the replies).

A record keeps the conversation up to the response (`messages`) and the response itself (`label`; for a pair, the
tuple (chosen, rejected)); the model's chat template turns them into tokens later (tasks/instruction.py). With
`messages`, the last message must be the assistant's reply to learn; earlier assistant turns are context only.
Errors name the file and line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional

from tunelab.data.readers import _check_file, _parse_json_line, _read_utf8, _refuse_json_array
from tunelab.data.records import Record
from tunelab.errors import DataError

__all__ = ["read_instructions", "instruction_record", "read_pairs", "pair_record", "ROLES"]

ROLES = ("system", "user", "assistant")
_SHAPE = ('each line must be {"prompt": "...", "response": "..."} or {"messages": [{"role": "user", '
          '"content": "..."}, {"role": "assistant", "content": "..."}]}')
_PAIR_SHAPE = ('each line must be {"prompt": "...", "chosen": "...", "rejected": "..."} (optional "system"), or '
               '{"messages": [...the conversation up to the user\'s request...], "chosen": "...", "rejected": "..."}')


def read_instructions(path: str | Path, *, require_labels: bool = True) -> list[Record]:
    return _read_lines(path, lambda obj, where: _from_object(obj, where, require_labels), "instruction data", _SHAPE)


def read_pairs(path: str | Path) -> list[Record]:
    """Preference pairs: a prompt (or conversation) and two replies, the chosen one preferred. Prediction input
    takes the same lines: the pair is what the model scores."""
    return _read_lines(path, _pair_from_object, "preference data", _PAIR_SHAPE)


def pair_record(prompt: str, chosen: str, rejected: str, where: str, system: Optional[str] = None) -> Record:
    """One preference pair for a single-turn prompt (built-in pair sets make them this way)."""
    return dataclasses.replace(instruction_record(prompt, "", where, system), label=(chosen, rejected))


def _read_lines(path: str | Path, parse: Callable[[dict[str, Any], str], Record], what: str, shape: str) -> list[Record]:
    file = Path(path)
    if _check_file(file) != "jsonl":
        raise DataError(f"{file}: {what} is read from JSON Lines (.jsonl); {shape}")
    text = _read_utf8(file)
    if file.suffix.lower() == ".json":
        _refuse_json_array(file, text)
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            records.append(parse(_parse_json_line(file, n, line), f"{file}:line {n}"))
    if not records:
        raise DataError(f"{file}: contains no examples (only blank lines); {shape}")
    return records


def _pair_from_object(obj: dict[str, Any], where: str) -> Record:
    missing = [key for key in ("chosen", "rejected") if key not in obj]
    if missing or ("prompt" not in obj and "messages" not in obj):
        keys = ", ".join(sorted(obj)) or "none"
        raise DataError(f"{where}: no {' or '.join(repr(k) for k in missing) or 'prompt or messages'} key "
                        f"(keys: {keys}); {_PAIR_SHAPE}")
    chosen, rejected = _text(obj["chosen"], where, '"chosen"'), _text(obj["rejected"], where, '"rejected"')
    if chosen.strip() == rejected.strip():
        raise DataError(f"{where}: \"chosen\" and \"rejected\" are the same text, which teaches nothing; remove the "
                        "line or give the reply that is worse as \"rejected\"")
    if "messages" in obj:
        context = _from_messages(obj["messages"], where, require_labels=False)
        if context.label:
            raise DataError(f"{where}: \"messages\" ends with an assistant reply; end it with the user's request "
                            "and give the two replies as \"chosen\" and \"rejected\"")
        return dataclasses.replace(context, label=(chosen, rejected))
    system = _text(obj["system"], where, '"system"') if obj.get("system") is not None else None
    return pair_record(_text(obj["prompt"], where, '"prompt"'), chosen, rejected, where, system)


def instruction_record(prompt: str, response: str, where: str, system: Optional[str] = None) -> Record:
    """One single-turn example (built-in data sets and `tunelab generate` make them this way)."""
    messages = ((("system", system),) if system else ()) + (("user", prompt),)
    return Record(text=prompt, label=response, where=where, messages=messages)


def _text(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        shown = "missing" if value is None else f"{type(value).__name__} {value!r:.60}"
        raise DataError(f"{where}: {key} must be a non-empty string, got {shown}; {_SHAPE}")
    return value


def _from_object(obj: dict[str, Any], where: str, require_labels: bool) -> Record:
    if "messages" in obj:
        return _from_messages(obj["messages"], where, require_labels)
    if "prompt" not in obj:
        keys = ", ".join(sorted(obj)) or "none"
        raise DataError(f"{where}: no \"prompt\" or \"messages\" key (keys: {keys}); {_SHAPE}")
    prompt = _text(obj["prompt"], where, '"prompt"')
    system = _text(obj["system"], where, '"system"') if obj.get("system") is not None else None
    if obj.get("response") is None and not require_labels:
        return instruction_record(prompt, "", where, system)
    return instruction_record(prompt, _text(obj.get("response"), where, '"response"'), where, system)


def _from_messages(messages: Any, where: str, require_labels: bool) -> Record:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: \"messages\" must be a non-empty list of {{\"role\", \"content\"}} objects")
    pairs = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            role = message.get("role") if isinstance(message, dict) else message
            raise DataError(f"{where}: messages[{i}] has role {role!r:.40}; each message needs \"role\" "
                            f"(one of {', '.join(ROLES)}) and \"content\"")
        pairs.append((message["role"], _text(message.get("content"), where, f"messages[{i}].content")))
    response = ""
    if pairs[-1][0] == "assistant":
        response = pairs.pop()[1]
    elif require_labels:
        raise DataError(f"{where}: the last message is from {pairs[-1][0]!r}; the last message must be the "
                        "assistant's reply the model should learn to write")
    if not pairs or pairs[-1][0] != "user":
        raise DataError(f"{where}: the reply must follow a user message; put the user's request before it")
    return Record(text=pairs[-1][1], label=response, where=where, messages=tuple(pairs))
