"""SLAs on work items: the clock (timers), the breach actions, the follow-up items they open."""
