"""Builds the orchestrator's parts from settings, once per process."""

from __future__ import annotations

from functools import cached_property

import redis
from celery import Celery
from sqlalchemy import Engine

from config.settings import Settings
from orchestrator.service.coordinator import Coordinator
from orchestrator.service.dispatcher import Dispatcher
from orchestrator.service.recovery import ReportRecovery
from orchestrator.service.timers import TimerService
from orchestrator.storage.db import SessionFactory, make_engine, make_session_factory
from orchestrator.work.webhook_targets import Resolver, system_resolver
from workers.celery.app import create_app, redis_client


class Wiring:
    """The orchestrator's parts for one process: engine, sessions, Celery app, dispatcher, coordinator, timers."""

    def __init__(self, settings: Settings, *, resolver: Resolver = system_resolver):
        self.settings = settings
        # How webhook URLs' names are looked up (tests map names to addresses without DNS).
        self.resolver = resolver

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.effective_database_url())

    @cached_property
    def sessions(self) -> SessionFactory:
        return make_session_factory(self.engine)

    @cached_property
    def app(self) -> Celery:
        return create_app(self.settings)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        return Dispatcher(self.app, self.sessions, self.settings)

    @cached_property
    def coordinator(self) -> Coordinator:
        return Coordinator(self.sessions, self.settings, self.dispatcher)

    @cached_property
    def store_client(self) -> redis.Redis:
        """The workers' store (dedup results, stored reports, leases), as workers reach it."""
        return redis_client(self.settings)

    @cached_property
    def recovery(self) -> ReportRecovery:
        return ReportRecovery(self.sessions, self.settings, self.coordinator, self.store_client)

    @cached_property
    def timers(self) -> TimerService:
        return TimerService(self.sessions, self.settings, self.dispatcher)

    def close(self) -> None:
        if "dispatcher" in self.__dict__:
            self.dispatcher.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "app" in self.__dict__:
            self.app.close()
        if "store_client" in self.__dict__:
            self.store_client.close()
