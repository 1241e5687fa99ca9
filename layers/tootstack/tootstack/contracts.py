"""Typed contracts at the Lambda edges: each handler parses its event once, into one model per shape.

Each capability declares its events next to its code (`tootstack/<capability>/events.py`): one pydantic
model per action, with a `Literal` discriminator, and a discriminated union per handler (Powertools
Parser style, `examples/parser/src/multiple_model_parsing.py`). `parse(Union, event, what)` validates the
raw event against it with Powertools' `parse` and returns the model; the handler dispatches on the
model's type.

A refused event raises `InvalidInput` (the error name the state machines and callers know) whose message
names each wrong field and what it should be, never the value sent: pydantic's own messages quote the
input only for an unknown discriminator tag, which is replaced here by the list of expected tags.

Cold starts (bench/lambda_imports.py): Powertools' parser is imported on the first event (its `parse`
alone, never `parser.models`, whose `__init__` imports every event model Powertools ships), and the models
build their validators then too (`defer_build`): a handler's import pays pydantic and its model classes.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tootstack.errors import InvalidInput

T = TypeVar("T")
MAX_PROBLEMS = 5


class Event(BaseModel):
    """Base of every event model: unknown keys are ignored (callers add fields over time, and the
    state machines pass their whole state), fields keep their names, models are immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)


def problems(exc: ValidationError, limit: int = MAX_PROBLEMS) -> str:
    """'field.path: what it must be; ...' for each error, without the input values."""
    out = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(event)"
        ctx = err.get("ctx") or {}
        field = str(ctx.get("discriminator", loc)).strip("'")   # pydantic quotes the discriminator's name
        if err["type"] == "union_tag_invalid":
            out.append(f"{field}: unknown value, expected one of {ctx.get('expected_tags', '?')}")
        elif err["type"] == "union_tag_not_found":
            out.append(f"{field}: Field required")
        else:
            out.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(out) + (f"; and {more} more" if more > 0 else "")


def parse(shape: type[T] | Any, event: Any, what: str) -> T:
    """`event` validated as `shape` (a model or an annotated union); InvalidInput naming the fields otherwise."""
    if not isinstance(event, dict):
        raise InvalidInput(f"{what}: the event must be a JSON object, got {type(event).__name__}")
    from aws_lambda_powertools.utilities.parser import parse as powertools_parse   # on first use: see above

    try:
        return powertools_parse(event=event, model=shape)   # a TypeAdapter per shape, cached by Powertools
    except ValidationError as exc:
        raise InvalidInput(f"malformed {what}: {problems(exc)}") from None

