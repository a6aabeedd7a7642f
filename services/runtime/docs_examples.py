"""Examples for the AsyncAPI messages, built from the contracts' own field examples.

Every example is the contract's model validated and dumped again, so an example that
breaks its contract cannot be published: building it raises. A field's first
``examples=[...]`` value is used; a ``Literal`` field takes its one value (an event's
``type``); an optional field without examples is left to its default; a required field
without examples is filled from its nested model, or raises ``MissingExample`` naming
the field to give examples to (in ``contracts/``).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, RootModel, ValidationError
from pydantic.fields import FieldInfo

from contracts.envelope import Envelope


class MissingExample(ValueError):
    """A required contract field has no example to build a message example from."""


@dataclass(frozen=True)
class Example:
    """One AsyncAPI message example (Message Example Object)."""

    name: str
    summary: str
    payload: Any
    headers: dict[str, str] | None = None

    def jsonable(self) -> dict[str, Any]:
        found: dict[str, Any] = {"name": self.name, "summary": self.summary}
        if self.headers is not None:
            found["headers"] = self.headers
        found["payload"] = self.payload
        return found


def example_of(model: type[BaseModel]) -> BaseModel:
    """A valid instance of ``model`` from its fields' examples."""
    return model.model_validate(_example_data(model))


def message_examples(model: type[BaseModel]) -> list[Example]:
    """The examples of a message whose payload is ``model``: one per reply variant for a
    query's answer (its result and the error), else one; an event's carries the
    ``Nats-Msg-Id`` header it must be published with."""
    variants = _variants(model)
    if variants:
        return [
            Example(
                name=variant.__name__,
                summary=(variant.__doc__ or variant.__name__).strip().splitlines()[0],
                payload=model.model_validate(_example_data(variant)).model_dump(
                    mode="json", by_alias=True
                ),
            )
            for variant in variants
        ]
    instance = example_of(model)
    headers = instance.headers() if isinstance(instance, Envelope) else None
    return [
        Example(
            name=model.__name__,
            summary=(model.__doc__ or model.__name__).strip().splitlines()[0],
            payload=instance.model_dump(mode="json", by_alias=True),
            headers=headers,
        )
    ]


def _variants(model: type[BaseModel]) -> list[type[BaseModel]]:
    """The models of a ``RootModel`` union (a query's answer), else none."""
    if not issubclass(model, RootModel):
        return []
    return _models_in(model.model_fields["root"].annotation)


def _example_data(model: type[BaseModel]) -> dict[str, Any]:
    """The model's example as JSON data, valid for ``model``. Field examples are chosen
    one field at a time, so two that exclude each other (``patch`` and ``merge_patch``)
    can both be there: then one optional field is left out; a field whose example does
    not fit its type is built from its nested model instead."""
    nested: set[str] = set()
    data = _draft(model, nested)
    while True:
        try:
            model.model_validate(data)
            return data
        except ValidationError as exc:
            failed = {str(e["loc"][0]) for e in exc.errors() if e["loc"]} - nested
            fixable = {
                name
                for name, field in model.model_fields.items()
                if (field.alias or name) in failed and _models_in(field.annotation)
            }
            if fixable:
                nested |= fixable
                data = _draft(model, nested)
                continue
            for key in [k for k in reversed(data) if not _required(model, k)]:
                fewer = {k: v for k, v in data.items() if k != key}
                try:
                    model.model_validate(fewer)
                    return fewer
                except ValidationError:
                    pass
            raise MissingExample(
                f"{model.__module__}.{model.__name__}: its field examples do not make a "
                f"valid example ({exc.errors()[0]['msg']}); fix them in contracts/"
            ) from exc


def _required(model: type[BaseModel], key: str) -> bool:
    return any(
        (field.alias or name) == key and field.is_required()
        for name, field in model.model_fields.items()
    )


def _draft(model: type[BaseModel], nested: set[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        found = _NONE if name in nested else _field_example(field)
        if found is not _NONE:
            data[key] = found
        elif not field.is_required() and name not in nested:
            continue
        else:
            models = _models_in(field.annotation)
            if not models:
                raise MissingExample(
                    f"{model.__module__}.{model.__name__}.{name} is required and has no "
                    "examples: give its Field examples=[...]"
                )
            value: Any = _example_data(models[0])
            data[key] = [value] if _is_list(field.annotation) else value
    return data


_NONE = object()


def _field_example(field: FieldInfo) -> Any:
    literal = _literal_of(field.annotation)
    if literal is not _NONE:
        return literal
    if field.examples:
        return field.examples[0]
    return _NONE


def _literal_of(annotation: Any) -> Any:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)[0]
    return _NONE


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names (through Annotated, unions and lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(args[0])
    if origin in (typing.Union, types.UnionType, list, tuple, typing.Sequence):
        return [model for arg in args for model in _models_in(arg)]
    return []


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_list(typing.get_args(annotation)[0])
    return origin in (list, tuple)
