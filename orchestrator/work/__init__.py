"""The work-item system: items, lifecycles, offers and claims, queues, next-work, tokens."""
