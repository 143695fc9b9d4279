"""Query strings hold only what the operation declares: an unknown parameter, or a parameter that
takes one value sent more than once (``parent_id=a&parent_id=b``), is a 422 naming it.

FastAPI ignores both by default: a misspelt filter (``?stauts=done``) would silently list
everything, and of a repeated one the last value would win. The declared parameters are read from
the OpenAPI document, so what is refused is exactly what the document does not list.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import FastAPI, Request

from models.problems import summary
from orchestrator.errors import InvalidInput

# (path template, method) -> {parameter name: whether it takes a list of values}
Declared = dict[tuple[str, str], dict[str, bool]]


async def strict_query(request: Request) -> None:
    """An app-wide dependency: refuse what the operation's query parameters do not allow. (A
    coroutine: FastAPI would run a function in the thread pool, on every request.)"""
    route = request.scope.get("route")
    path = getattr(route, "path_format", None)
    if path is None or not request.query_params:
        return
    declared = _declared(request.app).get((path, request.method.lower()))
    if declared is None:
        return  # not in the OpenAPI document (the docs pages): nothing declared to hold it to
    counts = Counter(name for name, _ in request.query_params.multi_items())
    details: list[dict[str, str]] = []
    for name, count in counts.items():
        if name not in declared:
            details.append({"path": f"query.{name}", "message": "is not a parameter of this operation"})
        elif count > 1 and not declared[name]:
            details.append({"path": f"query.{name}", "message": f"takes one value; it was sent {count} times"})
    if details:
        raise InvalidInput(f"request is not valid: {summary(details)}", details=details)


def _declared(app: FastAPI) -> Declared:
    table: Declared | None = getattr(app.state, "query_table", None)
    if table is None:
        table = {}
        for path, item in app.openapi().get("paths", {}).items():
            for method, operation in item.items():
                if not isinstance(operation, dict):
                    continue
                table[(path, method)] = {
                    p["name"]: _is_list(p.get("schema", {}))
                    for p in operation.get("parameters", [])
                    if p.get("in") == "query"
                }
        app.state.query_table = table
    return table


def _is_list(schema: dict[str, Any]) -> bool:
    branches = schema.get("anyOf", [schema])
    return any(isinstance(b, dict) and b.get("type") == "array" for b in branches)
