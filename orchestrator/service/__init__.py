"""The orchestrator's loops: dispatcher, report consumer, coordinator, timers, webhook sender; the wiring."""
