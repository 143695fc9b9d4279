"""Step kinds: a handler, a fan-out of handlers, a work item (or a fan-out of them)."""
