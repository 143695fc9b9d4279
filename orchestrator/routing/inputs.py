"""What the routing engine decides on, besides the candidates (``models.agents.Candidate``): the
facts of one work item, and the live rules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from models.agents import RiskLevel
from models.principal import ALL_TENANTS
from models.routing import RoutingRuleSpec


@dataclass(frozen=True)
class ItemFacts:
    """A work item as routing sees it: what rules match on and what an agent must meet."""

    id: str
    tenant: str
    type: str
    labels: frozenset[str]
    priority: int
    risk: RiskLevel = RiskLevel.low
    # The capabilities the item needs whatever the rule: its type's, and its agent offer's.
    capabilities: tuple[str, ...] = ()
    # What its work involves (metadata.actions) and touches (metadata.datasets).
    actions: frozenset[str] = frozenset()
    datasets: frozenset[str] = frozenset()
    # A human-in-the-loop requirement already on the item (an earlier rule put it there).
    hitl: bool = False
    assignee: str | None = None  # "agent:<id>" / "user:<id>"
    holder: str | None = None  # who holds its claim now


@dataclass(frozen=True)
class Conditions:
    """A rule's match as sets and bounds: checked for every rule against every item routed."""

    enabled: bool
    tenant: str | None
    types: frozenset[str]
    labels: frozenset[str]
    lowest: int
    highest: int
    retriggers: frozenset[str]


@dataclass(frozen=True)
class LiveRule:
    """The live (latest) version of a routing rule of a tenant (or ``*``, an operator's)."""

    tenant: str
    version: int
    spec: RoutingRuleSpec

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def operators(self) -> bool:
        return self.tenant == ALL_TENANTS

    @cached_property
    def conditions(self) -> Conditions:
        match = self.spec.match
        return Conditions(
            enabled=self.spec.enabled,
            tenant=match.tenant,
            types=frozenset(match.types),
            labels=frozenset(match.labels),
            lowest=match.priority.min if match.priority else 0,
            highest=match.priority.max if match.priority else 100,
            retriggers=frozenset(self.spec.reroute_on),
        )

    @property
    def label(self) -> str:
        owner = "operator rule" if self.operators else "rule"
        return f"{owner} {self.id} v{self.version}"


class LiveRules(list[LiveRule]):
    """A tenant's live rules as read once per change and kept: with an index of them by label, made
    the first time an item is matched against them (a few hundred rules, each asking for a label or
    two, would otherwise all be checked for every item)."""

    _index: tuple[list[LiveRule], dict[str, list[LiveRule]]] | None = None

    def may_match(self, labels: Iterable[str]) -> list[LiveRule]:
        """The rules that could match an item with these labels: those that name none, and those
        whose least label is one of them (a rule matches only an item with all of its labels)."""
        index = self._index
        if index is None:
            unlabelled: list[LiveRule] = []
            by_label: dict[str, list[LiveRule]] = {}
            for rule in self:
                named = rule.conditions.labels
                if named:
                    by_label.setdefault(min(named), []).append(rule)
                else:
                    unlabelled.append(rule)
            index = self._index = (unlabelled, by_label)
        unlabelled, by_label = index
        return [*unlabelled, *(rule for label in labels for rule in by_label.get(label, ()))]
