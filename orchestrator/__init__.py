"""The orchestrator service: API, coordinator, outbox dispatcher, timers, CLI."""
