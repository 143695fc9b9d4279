"""Builds the orchestrator's parts from settings, once per process."""

from __future__ import annotations

from functools import cached_property, partial

import redis
from celery import Celery
from sqlalchemy import Engine

from config.settings import Settings
from orchestrator.metrics.collector import DatabaseCollector, Metrics, QueueReader
from orchestrator.service.coordinator import Coordinator
from orchestrator.service.dispatcher import Dispatcher
from orchestrator.service.queue_depth import queue_depths
from orchestrator.service.recovery import ReportRecovery
from orchestrator.service.redis_loss import RedisLoss
from orchestrator.service.timers import TimerService
from orchestrator.storage.db import SessionFactory, make_engine, make_session_factory
from orchestrator.work.claim_batches import ClaimBatcher
from orchestrator.work.webhook_targets import Resolver, system_resolver
from workers.broker.reports import redis_server
from workers.celery.app import broker_redis_client, create_app, redis_client


class Wiring:
    """The orchestrator's parts for one process: engine, sessions, Celery app, dispatcher, coordinator, timers."""

    def __init__(self, settings: Settings, *, resolver: Resolver = system_resolver):
        self.settings = settings
        # How webhook URLs' names are looked up (tests map names to addresses without DNS).
        self.resolver = resolver
        self._recovery_broker: redis.Redis | None = None
        self._metrics_broker: redis.Redis | None = None

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.effective_database_url())

    @cached_property
    def sessions(self) -> SessionFactory:
        return make_session_factory(self.engine)

    @cached_property
    def claim_batcher(self) -> ClaimBatcher:
        """This process's claim-next calls, claimed a few transactions at a time (see claim_batches)."""
        return ClaimBatcher(
            self.sessions,
            transactions=self.settings.work_claim_transactions,
            batch_max=self.settings.work_claim_batch_max,
        )

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
        # Its own client on the broker's Redis (None for RabbitMQ), for the queues' lengths.
        self._recovery_broker = broker_redis_client(self.settings)
        return ReportRecovery(
            self.sessions, self.settings, self.coordinator, self.store_client, broker=self._recovery_broker
        )

    @cached_property
    def broker_client(self) -> redis.Redis | None:
        """The broker's Redis where it is another server or database than the store's (it gets
        a generation marker of its own); None where it is the same, or not Redis."""
        client = broker_redis_client(self.settings)
        if client is not None and redis_server(client) == redis_server(self.store_client):
            client.close()
            return None
        return client

    @cached_property
    def redis_loss(self) -> RedisLoss:
        clients = [self.store_client] + ([self.broker_client] if self.broker_client is not None else [])
        return RedisLoss(self.sessions, self.settings, self.dispatcher, clients)

    def recover(self) -> int:
        """One pass of the recovery loop: a Redis that lost its data first (then what was in
        flight is dispatched again, and no stored report is left to look for), else lost reports."""
        if self.redis_loss.tick():
            return 0
        return self.recovery.tick()

    @cached_property
    def metrics(self) -> Metrics:
        """What this process's /metrics serves (see orchestrator.metrics.collector)."""
        queues: QueueReader | None = None
        broker = broker_redis_client(self.settings)
        if broker is not None:
            self._metrics_broker = broker
            queues = partial(queue_depths, broker)
        collector = DatabaseCollector(self.sessions, max_age_s=self.settings.metrics_max_age_s, queues=queues)
        return Metrics(collector)

    @cached_property
    def timers(self) -> TimerService:
        return TimerService(self.sessions, self.settings, self.dispatcher)

    def close(self) -> None:
        if "metrics" in self.__dict__:
            self.metrics.close()
        if "dispatcher" in self.__dict__:
            self.dispatcher.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "app" in self.__dict__:
            self.app.close()
        if "store_client" in self.__dict__:
            self.store_client.close()
        if self.__dict__.get("broker_client") is not None:
            self.__dict__["broker_client"].close()
        if self._recovery_broker is not None:
            self._recovery_broker.close()
        if self._metrics_broker is not None:
            self._metrics_broker.close()
