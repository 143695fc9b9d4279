"""Traceability (the work-items spec §13): the goal registry, agents' actions on work items and
their artifacts (deterministic ids), an item's trace, and the validation of the chains."""
