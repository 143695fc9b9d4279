"""The MCP server's tools and resources, defined once over a :class:`~.backend.Backend`.

Each tool is one backend call; its input schema comes from its typed parameters (with the same
limits as the HTTP API's request models) and its output schema from the API model it answers
with. Which backend serves a call is decided per request by the ``backend_for`` that
:func:`build_server` is given: the API's in-process one for the caller's token, or the stdio
proxy's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from functools import cache, partial
from typing import Annotated, Any, Literal

from mcp.server import MCPServer, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import Field, ValidationError

from models.api import SagaRead
from models.errors import WorkyardError
from models.problems import error_details, summary
from models.work_api import COST, MAX_COST, TTL, EventRead, NextWork, NotBool, WorkItemPage, WorkItemRead
from orchestrator.errors import InvalidInput, NotFound
from orchestrator.mcp.answers import answer, failure, resource_error
from orchestrator.mcp.backend import Backend

BackendFor = Callable[[ServerRequestContext[Any, Any]], Backend]

TYPES_URI = "workyard://work-item-types"
JSON = "application/json"

INSTRUCTIONS = """workyard hands out work items: typed units of work offered to people and agents.

The loop of an agent: claim_next (or list_available, then claim) -> start -> heartbeat while you
work (about every third of the lease's ttl_s) -> complete with a result, or fail with a reason, or
release to give the item back. claim_next and claim answer with the item: keep its id and its
lease_epoch, and send that lease_epoch with start, heartbeat, complete, fail and release. If the
lease lapsed or someone claimed the item since, those calls fail with a conflict error: stop
working on it and claim again. next_work says which item a user or agent should do next;
get_item and history show one item and its audit trail; submit_saga and saga_status start and
follow sagas. Every failure names a code (not_found, conflict, forbidden, invalid_input,
unauthorized, unavailable, ...) and what to do. The resource workyard://work-item-types lists the
item types with the JSON Schema of each (workyard://work-item-types/{name} for one)."""

# Which backend serves the call being handled. Set per message by the server's middleware: tools
# and resources read it from here because the SDK hands a static resource no request context.
_backend_of_call: ContextVar[Callable[[], Backend]] = ContextVar("workyard_mcp_backend")


def backend() -> Backend:
    """The backend for the call being handled (resolved lazily: a bad token is the call's error)."""
    return _backend_of_call.get()()


class _UseBackend:
    """Server middleware: binds each inbound message to its backend for the tools to find."""

    def __init__(self, backend_for: BackendFor):
        self.backend_for = backend_for

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        token = _backend_of_call.set(partial(self.backend_for, ctx))
        try:
            return await call_next(ctx)
        finally:
            _backend_of_call.reset(token)


# -- arguments (the HTTP API's limits, described for a model to read) ---------------------------
# A limit sits on the inner type: on the outside of NotBool's validator pydantic keeps it out of
# the JSON Schema (the model would see "gt" instead of exclusiveMinimum).

Seconds = Annotated[float, Field(gt=0, le=86_400)]
Positive = Annotated[int, Field(ge=1)]
ItemId = Annotated[
    str,
    Field(min_length=1, max_length=96, description="The work item's id (WI-...), as claim_next or get_item return it."),
]
Ttl = Annotated[NotBool[Seconds | None], Field(description=TTL)]
Epoch = Annotated[
    NotBool[Positive | None],
    Field(
        description="The lease_epoch your claim answered with; if the claim was lost since, the call is a conflict. "
        "Required while the claim is a lease (an agent's); null: not checked (a person's claim)."
    ),
]
Cost = Annotated[
    NotBool[Annotated[float, Field(ge=0, le=MAX_COST, allow_inf_nan=False)] | None], Field(description=COST)
]
Reason = Annotated[str | None, Field(max_length=2000, description="Why, kept in the item's history; null: none.")]
Limit = Annotated[NotBool[Annotated[int, Field(ge=1, le=500)]], Field(description="The most items per page.")]
Cursor = Annotated[
    str | None,
    Field(description="The next_cursor of the previous page, unchanged; null: the first page."),
]

log = logging.getLogger(__name__)

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
# Repeating the call with the same arguments changes nothing more (the lease is simply extended).
REPEATABLE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


# -- the tools ----------------------------------------------------------------------------------


def next_work(
    assignee_type: Annotated[
        Literal["user", "agent"], Field(description="Whether the work is for a user or an agent.")
    ],
    assignee_id: Annotated[
        str, Field(min_length=1, max_length=255, description="The user's or agent's id, as its token names it.")
    ],
) -> Annotated[CallToolResult, NextWork]:
    """The one item a user or an agent should do next, and which rule chose it: their todo subtasks
    whose dependencies are resolved, then their todo tasks, then blocked items they reported, then
    items in review; oldest first. work is null when there is nothing. Asking for someone else
    needs the work:supervise scope."""
    return answer(lambda: backend().next_work(assignee_type, assignee_id))


def list_available(limit: Limit = 50, cursor: Cursor = None) -> Annotated[CallToolResult, WorkItemPage]:
    """Open, unclaimed items offered or assigned to you, best first (highest priority, then
    oldest), one page at a time. Claim one with claim, or take the best with claim_next."""
    return answer(lambda: backend().available(limit=limit, cursor=cursor))


def claim_next(ttl_s: Ttl = None) -> Annotated[CallToolResult, WorkItemRead | None]:
    """Claim the best item offered to you (highest priority, then oldest) and answer with it as
    result; result is null when nothing is offered. Keep its id and lease_epoch: every later call
    on the item needs them. An agent's claim is a lease of ttl_s seconds: heartbeat before it
    lapses, or the item goes back to its queue."""
    nothing = "nothing to claim: no open item is offered to you right now"
    return answer(lambda: backend().claim_next(ttl_s=ttl_s), wrap=True, empty=nothing)


def claim(item_id: ItemId, ttl_s: Ttl = None) -> Annotated[CallToolResult, WorkItemRead]:
    """Claim one item exclusively (one that list_available showed). An agent's claim is a lease of
    ttl_s seconds that heartbeat extends. Another holder's item, or a closed one, is a conflict."""
    return answer(lambda: backend().claim(item_id, ttl_s=ttl_s))


def start(item_id: ItemId, lease_epoch: Epoch = None) -> Annotated[CallToolResult, WorkItemRead]:
    """Start work on the item: it moves to its lifecycle's working status (e.g. in_progress), or,
    if a previous holder left it in progress, you resume it. With the lease_epoch of your claim it
    starts the item you hold; without one, it claims the item first."""
    return answer(lambda: backend().start(item_id, lease_epoch=lease_epoch))


def heartbeat(
    item_id: ItemId,
    lease_epoch: Annotated[
        NotBool[Positive], Field(description="The lease_epoch of your claim; a lost or stale one is a conflict.")
    ],
    ttl_s: Annotated[
        NotBool[Seconds | None],
        Field(description="The lease's length from now on, for later beats too; null: keep the claim's own."),
    ] = None,
    progress: Annotated[
        dict[str, Any] | None,
        Field(
            description='How far the work is, as a JSON object (e.g. {"done": 3, "of": 10}); optional, kept '
            "on the item. Beating on with the same progress for too long marks you stalled."
        ),
    ] = None,
) -> Annotated[CallToolResult, WorkItemRead]:
    """Extend your lease on the item while you work on it; send one about every third of the
    lease's length. A conflict means the lease was lost (it lapsed, or the item was claimed
    again): stop working on the item."""
    return answer(lambda: backend().heartbeat(item_id, lease_epoch=lease_epoch, ttl_s=ttl_s, progress=progress))


def complete(
    item_id: ItemId,
    lease_epoch: Epoch = None,
    result: Annotated[
        Any,
        Field(description="What the work produced, any JSON value; kept on the item (a waiting saga resumes with it)."),
    ] = None,
    cost: Cost = None,
) -> Annotated[CallToolResult, WorkItemRead]:
    """Complete the item you hold with its result; its lifecycle says where that takes it (done, or
    review for a task). A conflict means your lease was lost (someone else may have the work now)
    or the item cannot be completed from its status; the message says which."""
    return answer(lambda: backend().complete(item_id, lease_epoch=lease_epoch, result=result, cost=cost))


def fail(
    item_id: ItemId,
    reason: Annotated[
        str, Field(min_length=1, max_length=2000, description="Why it cannot be done; kept on the item.")
    ],
    lease_epoch: Epoch = None,
    cost: Cost = None,
) -> Annotated[CallToolResult, WorkItemRead]:
    """Give up on the item you hold because it cannot be done, saying why. A saga waiting on it
    fails that step and compensates. To let someone else try instead, use release."""
    return answer(lambda: backend().fail(item_id, lease_epoch=lease_epoch, reason=reason, cost=cost))


def release(
    item_id: ItemId, lease_epoch: Epoch = None, reason: Reason = None
) -> Annotated[CallToolResult, WorkItemRead]:
    """Give the item you hold back to its queue, unfinished, for someone else to claim."""
    return answer(lambda: backend().release(item_id, lease_epoch=lease_epoch, reason=reason))


def get_item(item_id: ItemId) -> Annotated[CallToolResult, WorkItemRead]:
    """One work item: its payload (what to work on), status, offer, claim and lease, result, SLA and
    the saga step waiting on it. Another tenant's item, or a deleted one, is not_found."""
    return answer(lambda: backend().get_work_item(item_id))


def history(item_id: ItemId) -> Annotated[CallToolResult, list[EventRead]]:
    """The item's audit trail, oldest first: every transition, claim, release, lease expiry and
    assignment, with who did it and when."""
    return answer(lambda: backend().history(item_id), wrap=True)


def submit_saga(
    template: Annotated[str, Field(min_length=1, max_length=200, description="The saga template's name.")],
    input: Annotated[
        dict[str, Any], Field(description="The saga's input, a JSON object its template's input_schema accepts.")
    ],
    version: Annotated[
        str | None, Field(description="The template's semantic version; null: its highest version.")
    ] = None,
    idempotence_key: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=255,
            description="A retry with the same key and input answers with the first saga instead of a second one.",
        ),
    ] = None,
) -> Annotated[CallToolResult, SagaRead]:
    """Start a saga of a template for your token's tenant; answers with the saga (follow it with
    saga_status). Needs the sagas:write scope."""
    return answer(lambda: backend().submit_saga(template, input, version=version, idempotence_key=idempotence_key))


def saga_status(
    saga_id: Annotated[str, Field(min_length=1, description="The saga's id, as submit_saga answered with it.")],
) -> Annotated[CallToolResult, SagaRead]:
    """A saga's state (running, compensating, completed, compensated, ...), its steps, every
    attempt and the work items it waits on. Needs the sagas:read scope."""
    return answer(lambda: backend().get_saga(saga_id))


TOOLS: tuple[tuple[Callable[..., CallToolResult], ToolAnnotations], ...] = (
    (next_work, READ),
    (list_available, READ),
    (claim_next, WRITE),
    (claim, WRITE),
    (start, WRITE),
    (heartbeat, REPEATABLE),
    (complete, WRITE),
    (fail, WRITE),
    (release, WRITE),
    (get_item, READ),
    (history, READ),
    (submit_saga, WRITE),
    (saga_status, READ),
)


# -- the resources ------------------------------------------------------------------------------


def work_item_types() -> str:
    """Every work-item type (built in and registered), each with the JSON Schema its items must
    satisfy and the lifecycle they follow."""
    try:
        types = backend().list_types()
    except WorkyardError as exc:
        raise resource_error(exc) from exc
    return _json([t.model_dump(mode="json", by_alias=True) for t in types])


def work_item_type(name: str) -> str:
    """One work-item type: the JSON Schema its items must satisfy and the lifecycle they follow."""
    try:
        found = [t for t in backend().list_types() if t.name == name]
        if not found:
            raise NotFound(f"no work-item type {name!r}; {TYPES_URI} lists them")
    except WorkyardError as exc:
        raise resource_error(exc) from exc
    return _json(found[0].model_dump(mode="json", by_alias=True))


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


class _Server(MCPServer):
    """The SDK's server, answering arguments that fail the tools' input schemas as every other
    refusal is answered: an ``invalid_input`` tool error with the field paths (the SDK's own
    answer is its exception's text, with no structured content)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            details = error_details(cause.errors())
            # Field names only, as the SDK logs them: the rejected values are the caller's data.
            log.info("tool %r rejected arguments: %r", name, sorted({d["path"] for d in details}))
            return failure(InvalidInput(f"arguments are not valid: {summary(details)}", details=details))


@cache
def _described_tools() -> tuple[Tool, ...]:
    """Every tool as the SDK describes it (its argument and result schemas), made once per
    process: making them costs more than the rest of an app's start, and they never change.
    A Tool holds no per-server state; each server gets them all."""
    return tuple(Tool.from_function(tool, annotations=hints) for tool, hints in TOOLS)


def build_server(backend_for: BackendFor) -> MCPServer:
    """The MCP server with every tool and resource, each call served by ``backend_for(request)``."""
    server: MCPServer = _Server(
        "workyard",
        title="workyard",
        instructions=INSTRUCTIONS,
        middleware=[_UseBackend(backend_for)],
        tools=list(_described_tools()),
    )
    server.resource(TYPES_URI, name="work-item-types", title="Work-item types", mime_type=JSON)(work_item_types)
    server.resource(f"{TYPES_URI}/{{name}}", name="work-item-type", title="A work-item type", mime_type=JSON)(
        work_item_type
    )
    return server
