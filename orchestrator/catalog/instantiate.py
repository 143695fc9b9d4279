"""Instantiating a work-item template: its item and its inclusions' items (children of it) in one
transaction, all or none, then its workflow saga.

Everything that can be wrong with the request is found before anything is written: the
parameters (each its type), every rendered item (a valid request, a valid item of its type),
the workflow's input against its saga template's input schema. With an idempotence key, each
item gets a key of its own derived from it (the template's item the key itself, an inclusion's
``<key>/<n>``), so a retry finds the items the first call created and answers with them; the
workflow's saga has the key ``workitem:<item id>:workflow``, so a retry after the items were
written and before the saga was started starts it once.

Each item records the template it was made from and those that template extends
(``templates_applied``, nearest first), and is audited ``instantiated`` with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from config.settings import Settings
from models.item_templates import Instantiated, InstantiateRequest
from models.keytemplate import KeyTemplateError, render_value
from models.principal import Principal, Scope
from models.work_api import WorkItemCreate
from models.work_tables import ItemTemplateRow, WorkItem
from orchestrator.catalog import registry
from orchestrator.catalog.params import bind
from orchestrator.errors import InvalidInput
from orchestrator.sagas.item_compensation import check_plan
from orchestrator.sagas.submit import check_input, submit_saga
from orchestrator.sagas.templates import get_template
from orchestrator.storage.db import SessionFactory
from orchestrator.work import audit
from orchestrator.work.access import require, tenant_for_write
from orchestrator.work.items import check_offer, check_size, insert_item, schema_document
from orchestrator.work.types import get_type, validate_item
from orchestrator.work.views import read_items


@dataclass
class Planned:
    """An item to create: its request (parent set once the parent exists) and its inclusions'."""

    request: WorkItemCreate
    children: list[Planned] = field(default_factory=list)


def instantiate(
    sessions: SessionFactory,
    settings: Settings,
    principal: Principal,
    name: str,
    body: InstantiateRequest,
) -> Instantiated:
    require(principal, Scope.work_write)
    tenant = tenant_for_write(principal, body.tenant)
    with sessions.begin() as session:
        row = registry.find(session, tenant, name, body.version)
        values = bind(_specs(row), body.parameters)
        limit = settings.work_item_max_payload_bytes
        plan = _plan(session, tenant, row, values, body, limit, key=body.idempotence_key, path="")
        workflow = row.effective.get("workflow")
        if workflow is not None:
            require(principal, Scope.sagas_write)
            spec = get_template(session, workflow["template"], workflow.get("version"), tenant=tenant)
            # The item's id is not known yet: the input is checked with a stand-in of its shape.
            check_input(spec, _render(workflow.get("input", {}), values, "workflow.input", item_id="wi-0"))
        created: list[WorkItem] = []
        fresh = _create(session, principal, tenant, plan, None, created)
        template_id = f"tpl:{row.name}:{row.version}"
        answer = read_items(session, created)
    saga_id = None
    if workflow is not None:
        main = answer[0]
        submitted = submit_saga(
            sessions,
            settings,
            template=workflow["template"],
            version=workflow.get("version"),
            input=_render(workflow.get("input", {}), values, "workflow.input", item_id=main.id),
            idempotence_key=f"workitem:{main.id}:workflow",
            tenant=tenant,
        )
        saga_id = submitted.saga.id
    return Instantiated(template_id=template_id, created=fresh, items=answer, saga_id=saga_id)


def _specs(row: ItemTemplateRow) -> dict[str, Any]:
    return registry.view(row).parameters


def _plan(
    session: Session,
    tenant: str,
    row: ItemTemplateRow,
    values: dict[str, Any],
    body: InstantiateRequest,
    limit: int,
    *,
    key: str | None,
    path: str,
) -> Planned:
    """The items to create for ``row`` with ``values``, each checked as a work-item request."""
    where = f"{path}item" if path else "item"
    rendered = registry.with_policy(
        _render(row.effective["item"], values, where), row.effective.get("approvalPolicyId")
    )
    top = not path
    document = {
        **rendered,
        "templates_applied": [{"template_id": i, "version": i.rpartition(":")[2]} for i in _lineage(session, row)],
        "type": row.type,
        "tenant": tenant,
        "idempotence_key": key,
        "parent_id": body.parent_id if top else None,
    }
    if top and body.due_at is not None:
        document["due_at"] = body.due_at
    try:
        request = WorkItemCreate.model_validate(document)
    except ValidationError as exc:
        details = registry.field_problems(exc, where)
        raise InvalidInput(
            f"template {row.name}@{row.version} made an invalid item: "
            + "; ".join(f"{d['path']}: {d['message']}" for d in details),
            details=details,
        ) from exc
    try:
        validate_item(get_type(session, row.type), schema_document(request.model_dump(mode="json", exclude_none=True)))
    except InvalidInput as exc:
        details = [{**d, "path": f"{where}.{d['path']}"} for d in exc.details or []]
        raise InvalidInput(
            f"template {row.name}@{row.version} made an invalid item: {exc.message}", details=details
        ) from exc
    check_size(request.payload, request.metadata, limit)
    check_offer(request.offer)
    if request.compensation is not None:
        try:
            check_plan(session, tenant, request.compensation)
        except InvalidInput as exc:
            details = [{**d, "path": f"{where}.{d['path']}"} for d in exc.details or []]
            raise InvalidInput(
                f"template {row.name}@{row.version} made an invalid item: {exc.message}", details=details
            ) from exc
    planned = Planned(request)
    for n, include in enumerate(row.effective["includes"]):
        # A pin names the including template's owner's version: a tenant's own template of the
        # same name and version does not stand in for an operator's.
        child = registry.find(session, row.tenant, *_ref(include["template"]))
        child_path = f"{path}includes[{n}]."
        given = _render(include.get("parameters", {}), values, f"{child_path}parameters")
        child_values = bind(_specs(child), given, where=f"{child_path}parameters")
        child_key = f"{key}/{n + 1}" if key is not None else None
        nested = _plan(session, tenant, child, child_values, body, limit, key=child_key, path=child_path)
        planned.children.append(nested)
    return planned


def _create(
    session: Session, principal: Principal, tenant: str, plan: Planned, parent: WorkItem | None, created: list[WorkItem]
) -> bool:
    """Create ``plan``'s items depth first (a child after its parent); True if any was new."""
    request = plan.request
    if parent is not None:
        request = request.model_copy(update={"parent_id": parent.id})
    item, fresh = insert_item(session, principal, tenant, request)
    if fresh:
        applied = [t.template_id for t in request.templates_applied]
        audit.record(
            session,
            item,
            "instantiated",
            principal.ref,
            details={"templateId": applied[0], "templatesApplied": applied},
        )
    created.append(item)
    for child in plan.children:
        fresh = _create(session, principal, tenant, child, item, created) or fresh
    return fresh


def _lineage(session: Session, row: ItemTemplateRow) -> list[str]:
    """The template's id and those of the templates it extends, nearest first."""
    ids = [f"tpl:{row.name}:{row.version}"]
    extends, current = row.spec.get("extends"), row
    while extends:
        parent = registry.find(session, current.tenant, *_ref(extends))
        ids.append(f"tpl:{parent.name}:{parent.version}")
        extends, current = parent.spec.get("extends"), parent
    return ids


def _ref(ref: str) -> tuple[str, str | None]:
    name, _, version = ref.partition("@")
    return name, version or None


def _render(value: Any, values: dict[str, Any], path: str, *, item_id: str | None = None) -> Any:
    context: dict[str, Any] = {"params": values}
    if item_id is not None:
        context["item"] = {"id": item_id}
    try:
        return render_value(value, context)
    except KeyTemplateError as exc:
        raise InvalidInput(str(exc), details=[{"path": path, "message": str(exc)}]) from exc
