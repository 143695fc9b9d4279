"""Routing (work-items spec §4 and §12.1): declarative rules that give a work item to one of the
registered agents that fit it, evaluated when the item is created and again on every re-routing
trigger (a failure, a lapsed lease, an SLA breach, a manual reroute).

``inputs``, ``checks``, ``strategies`` and ``engine`` decide, without a database (pure: rules,
item facts, candidates and a round-robin cursor in, a decision out); ``rules``, ``decisions``,
``cursors``, ``facts`` and ``source`` read and write what they need; ``assign`` applies a
decision to the item; ``triggers`` is what the rest of workyard calls.
"""
