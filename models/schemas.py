"""JSON Schemas that users register (a template's input schema, a work-item type's schema), made
safe to run on every request.

- Patterns (``pattern``, ``patternProperties``) run on RE2, a linear-time engine: a pattern such as
  ``^(a+)+$`` costs microseconds on any input instead of doubling with each character and
  blocking the API. A pattern RE2 cannot run (back-references, look-arounds) is refused at
  registration, with its path.
- ``$ref`` is local only (``#/...``) and must resolve; nothing is ever fetched (no ``http://``,
  no ``file://``): validators get a registry holding the schema alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import re2
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from models.errors import WorkyardError

_SCHEMA_URI = "urn:workyard:schema"


class SchemaProblem(WorkyardError, ValueError):
    """A schema workyard will not run: where in it (a dotted path) and why."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message  # the reason alone; str() of the error names the path too


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported to the caller, not to stderr
    return options


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _options())


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, properties: dict[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in properties.items():
        for key, value in instance.items():
            if _compiled(pattern).search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


# Draft 2020-12, with patterns on RE2.
SafeValidator: Any = validators.extend(  # type: ignore[no-untyped-call]  # jsonschema's extend is untyped
    Draft202012Validator, {"pattern": _pattern, "patternProperties": _pattern_properties}
)


def check_schema(schema: dict[str, Any], root: str) -> None:
    """Refuse a schema that is not valid Draft 2020-12, has a pattern RE2 cannot run, or a
    ``$ref`` that is not local or points nowhere (raises :class:`SchemaProblem`)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        path = ".".join([root, *map(str, exc.absolute_path)])
        raise SchemaProblem(path, f"is not a valid JSON Schema: {exc.message}") from exc
    resolver = Registry().with_resource(_SCHEMA_URI, DRAFT202012.create_resource(schema)).resolver(_SCHEMA_URI)
    for path, key, value in _walk(schema, root):
        if key == "$ref" and isinstance(value, str):
            if not value.startswith("#"):
                raise SchemaProblem(path, f"only local $ref (#/...) is supported, not {value!r}")
            try:
                resolver.lookup(value)
            except Unresolvable as exc:
                raise SchemaProblem(path, f"$ref {value!r} points nowhere") from exc
        patterns = (
            [value]
            if key == "pattern" and isinstance(value, str)
            else list(value)
            if key == "patternProperties" and isinstance(value, dict)
            else []
        )
        for pattern in patterns:
            try:
                _compiled(pattern)
            except re2.error as exc:
                raise SchemaProblem(
                    path, f"pattern {pattern!r} cannot run in linear time (no back-references or look-arounds)"
                ) from exc


def _walk(node: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(path of the key, key, value) for every key of every object in the schema, iteratively."""
    stack: list[tuple[Any, str]] = [(node, path)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield f"{at}.{key}", key, value
                stack.append((value, f"{at}.{key}"))
        elif isinstance(item, list):
            stack.extend((value, f"{at}.{n}") for n, value in enumerate(item))


def validator_for(schema: dict[str, Any]) -> Any:
    """A validator of ``schema`` whose references resolve inside it and nowhere else."""
    registry: Registry[Any] = Registry().with_resource(_SCHEMA_URI, DRAFT202012.create_resource(schema))
    return SafeValidator(schema, registry=registry)
