"""Policy gates (the work-items spec §7): policies, approvals, evidence and validators, and the
check every transition of an item passes through (``evaluate.enforce``)."""
