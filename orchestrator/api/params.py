"""Query parameters several routers share."""

from __future__ import annotations

from typing import Any

from fastapi import Query

from models.work_api import no_null


def tenant_query(description: str) -> Any:
    """``?tenant=``: whose resource an all-tenant token means (a tenant's token names its own).
    No null in the schema: a query parameter is absent or a string."""
    return Query(min_length=1, max_length=64, json_schema_extra=no_null, description=description)
