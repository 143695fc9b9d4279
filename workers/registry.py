"""The ``@step`` decorator and the registry of handlers a worker can run."""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from workers.context import StepContext
from workers.errors import WorkyardError


class RegistryError(WorkyardError):
    """A handler is declared wrongly or twice."""


@dataclass(frozen=True)
class StepHandler:
    """A registered @step handler: its name, its capability, the function, and the pydantic model of its input."""

    name: str
    capability: str
    func: Callable[[StepContext, Any], Any]
    input_model: type[BaseModel]


_REGISTRY: dict[str, StepHandler] = {}

F = typing.TypeVar("F", bound=Callable[..., Any])


def step(name: str, *, capability: str) -> Callable[[F], F]:
    """Register a handler: ``def handler(ctx: StepContext, cmd: SomeModel) -> OtherModel``.

    The handler is plain Python and knows nothing of Celery; a template step names it by
    ``name`` and runs it on workers started for ``capability``. Compensations are handlers too.
    """

    def register(func: F) -> F:
        input_model = _input_model(name, func)
        existing = _REGISTRY.get(name)
        if existing is not None and existing.func is not func:
            qual = f"{existing.func.__module__}.{existing.func.__qualname__}"
            raise RegistryError(f"handler {name!r} is already registered by {qual}")
        _REGISTRY[name] = StepHandler(name, capability, func, input_model)
        return func

    return register


def _input_model(name: str, func: Callable[..., Any]) -> type[BaseModel]:
    params = list(inspect.signature(func).parameters.values())
    if len(params) != 2:
        raise RegistryError(f"handler {name!r} must take (ctx: StepContext, cmd: <pydantic model>)")
    hints = typing.get_type_hints(func)
    model = hints.get(params[1].name)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise RegistryError(f"handler {name!r}: its second parameter must be typed as a pydantic model")
    return model


def get_handler(name: str) -> StepHandler | None:
    return _REGISTRY.get(name)


def capabilities() -> list[str]:
    """Every capability some registered handler runs on."""
    return sorted({h.capability for h in _REGISTRY.values()})


def handlers_for(names: Iterable[str]) -> list[StepHandler]:
    """Handlers registered for any of the capabilities ``names``."""
    wanted = set(names)
    return [h for h in _REGISTRY.values() if h.capability in wanted]


def load_handler_modules(modules: Iterable[str]) -> None:
    """Import the modules whose ``@step`` decorators fill the registry."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise RegistryError(f"cannot import handler module {module!r}: {exc}") from exc
