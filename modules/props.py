"""Typed construct props that own their defaults, their allowed values and the words for both.

Every props class is a frozen pydantic model. Each field has a docstring ending in ``Default: …`` (or
``Required.``) and, where its value is constrained, an ``Allowed`` marker that checks the value and words the rule.
Those words appear in the error raised at construction (``invalid prop DatabaseProps.port=80: allowed an integer
from 1150 to 65535``), in ``StackSettings`` (whose fields are derived from the props) and in the generated settings
table, so a rule is written once.

Values Terraform only knows at apply (cdktf tokens) pass every check unexamined, as in AWS CDK.
"""

from __future__ import annotations

import re
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, core_schema

from modules.validation import PropError

__all__ = [
    "Allowed",
    "Labeler",
    "Props",
    "Refusal",
    "between",
    "describe_failure",
    "field_allowed",
    "is_unresolved",
    "matching",
    "one_of",
    "satisfying",
]

Labeler = Callable[[type, str], str]
"""Names a field for an error: ``(model class, dotted path) -> name`` (a prop path, or the flat setting name)."""


def is_unresolved(value: Any) -> bool:
    """True for a cdktf token (a value Terraform resolves at apply). Without cdktf loaded no value can be one."""
    cdktf = sys.modules.get("cdktf")
    if cdktf is None or not isinstance(value, str | float | list | tuple):  # number tokens are floats, never ints
        return False
    if isinstance(value, str):  # an element of a list token is unresolved as a one-element list
        return bool(cdktf.Token.is_unresolved(value) or cdktf.Token.is_unresolved([value]))
    return bool(cdktf.Token.is_unresolved(list(value) if isinstance(value, tuple) else value))


@dataclass(frozen=True)
class Allowed:
    """Field metadata: a test every concrete value must pass, and the words for the values that pass."""

    description: str
    test: Callable[[Any], bool]
    integer: bool = False
    """Refuse booleans, which Python would otherwise accept as 0 and 1."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        schema = core_schema.no_info_after_validator_function(self._check, handler(source))
        if self.integer:
            schema = core_schema.no_info_before_validator_function(self._not_bool, schema)
        return schema

    def _check(self, value: Any) -> Any:
        if not is_unresolved(value) and not self.test(value):
            # The parsed value, not the raw input: "150" from an environment variable is reported as 150.
            raise PydanticCustomError("not_allowed", "allowed {allowed}", {"allowed": self.description, "value": value})
        return value

    def _not_bool(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError("not_allowed", "allowed {allowed}", {"allowed": self.description})
        return value


def between(low: int, high: int) -> Allowed:
    return Allowed(f"an integer from {low} to {high}", lambda v: low <= v <= high, integer=True)


def one_of(choices: Iterable[Any]) -> Allowed:
    choices = tuple(choices)
    return Allowed(
        "one of " + ", ".join(map(str, choices)), lambda v: v in choices, integer=isinstance(choices[0], int)
    )


def matching(pattern: str | re.Pattern[str], description: str) -> Allowed:
    compiled = re.compile(pattern)
    return Allowed(description, lambda v: compiled.fullmatch(v) is not None)


def satisfying(description: str, test: Callable[[Any], bool], *, integer: bool = False) -> Allowed:
    return Allowed(description, test, integer=integer)


class Refusal(ValueError):
    """A cross-field check failed. ``allowed`` may name other fields as ``{path}``: the error names them the way the
    reader knows them (prop paths for construct users, setting names for environment files)."""

    def __init__(self, owner: type, path: tuple[str, ...], value: Any, allowed: str):
        super().__init__(allowed)
        self.owner, self.path, self.value, self.allowed = owner, path, value, allowed


class Props(BaseModel):
    """Base of every props class: frozen, no unknown fields, field docstrings kept as descriptions."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, arbitrary_types_allowed=True)

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            path, value, allowed = describe_failure(type(self), exc, "prop")
            error = PropError(type(self).__name__, path, value, allowed)
            error.source = (type(self), exc)
            raise error from None

    def refuse(self, field: str, allowed: str, value: Any = None) -> NoReturn:
        """Fail a cross-field check of ``field`` (dotted for a nested one); ``value`` defaults to the field's."""
        path = tuple(field.split("."))
        if value is None:
            value = self
            for part in path:
                value = getattr(value, part)
        raise Refusal(type(self), path, value, allowed)

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied (``model_copy`` would skip validation)."""
        return type(self)(**{**{name: getattr(self, name) for name in type(self).model_fields}, **changes})


# ---------------------------------------------------------------------------------------------- error wording
class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_TYPE_WORDS = (
    ("int_", "an integer"),
    ("bool_", "true or false"),
    ("string_", "a string"),
    ("tuple_", "a list"),
    ("list_", "a list"),
    ("dict_", "a mapping of names to strings"),
    ("float_", "a number"),
    ("path_", "a file system path"),
)
_REFERENCE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def _same(owner: type, path: str) -> str:
    return path


def describe_failure(model: type[BaseModel], exc: ValidationError, kind: str, label: Labeler = _same):
    """(field name, value, allowed words) of the first failure in ``exc``, raised while validating ``model``."""
    error = _first(exc.errors(include_url=False))
    owner, path, field = _walk(model, error["loc"])
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, PropError) and cause.source is not None:  # a nested props class built from a mapping
        inner, inner_exc = cause.source

        def nested(of: type, sub: str) -> str:
            return label(model, ".".join((*path, sub))) if of is inner else label(of, sub)

        return describe_failure(inner, inner_exc, kind, nested)
    if isinstance(cause, Refusal):
        full = ".".join((*path, *cause.path))
        allowed = _REFERENCE.sub(lambda m: label(cause.owner, m.group(1)), cause.allowed)
        return label(model, full), cause.value, allowed
    name = label(model, ".".join(path))
    if error["type"] == "missing":
        return name, _Missing(), "a value (required)"
    if error["type"] == "extra_forbidden":
        known = ", ".join(sorted(owner.model_fields)) if owner is not None else ""
        return label(model, ".".join((*path, str(error["loc"][-1])))), error["input"], f"a known {kind}: {known}"
    if error["type"] == "not_allowed":
        return name, ctx.get("value", error["input"]), ctx["allowed"]
    allowed = field_allowed(field) if field is not None else None
    expected_class = ctx.get("class_name") or ctx.get("class")
    if allowed is None and expected_class:
        allowed = f"a {expected_class}"
    if allowed is None:
        allowed = next((w for prefix, w in _TYPE_WORDS if error["type"].startswith(prefix)), error["msg"])
    return name, error["input"], allowed


def _first(errors: list[dict]) -> dict:
    """The first error, preferring a real check over a union member that merely has other fields."""
    for error in errors:
        cause = (error.get("ctx") or {}).get("error")
        source = getattr(cause, "source", None)
        if source is None or source[1].errors()[0]["type"] not in ("extra_forbidden", "missing"):
            return error
    return errors[0]


def _walk(model: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, tuple[str, ...], FieldInfo | None]:
    """Follow an error location through nested props: (model holding the last field, field path, that field).
    Union member tags and sequence indexes in ``loc`` are not field names and are dropped."""
    owner: type[BaseModel] | None = model
    path: list[str] = []
    field: FieldInfo | None = None
    for part in loc:
        if owner is None or not isinstance(part, str):
            continue
        if part in owner.model_fields:
            field = owner.model_fields[part]
            path.append(part)
            holder = owner
            owner = next((m for m in _models_in(field.annotation)), None)
            if owner is None:
                owner = holder
                break
        else:  # a union member's tag
            owner = next((m for m in _models_in(field.annotation) if m.__name__ == part), owner) if field else owner
    return owner, tuple(path), field


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def field_allowed(field: FieldInfo) -> str | None:
    """The words of the field's ``Allowed`` rules (on the field, or on its elements), if it has any."""
    rules = [item.description for item in field.metadata if isinstance(item, Allowed)] or _allowed_in(field.annotation)
    return "; ".join(rules) if rules else None


def _allowed_in(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is Annotated:
        rules = [item.description for item in annotation.__metadata__ if isinstance(item, Allowed)]
        if rules:
            return rules
    for arg in typing.get_args(annotation):
        found = _allowed_in(arg)
        if found:
            return found
    return []


def expect_props(props: Any, cls: type[Props]) -> None:
    """Constructs take their own props class (already validated); anything else is a programming error."""
    if not isinstance(props, cls):
        raise TypeError(f"expected {cls.__name__}, got {type(props).__name__}: build it with {cls.__name__}(...)")
