"""Settings read from ``WORKYARD_*`` environment variables.

With nothing set, workyard runs on the embedded default: SQLite and a Redis server that workyard
starts itself, both inside the data dir, so any ``workyard`` command run with the same data dir
finds the stack that ``workyard up`` started there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A Unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, NUL included).
_MAX_SOCKET_PATH = 100


class Settings(BaseSettings):
    """Everything workyard reads from its environment (prefix ``WORKYARD_``)."""

    # An error about a setting never repeats its value: keys and URLs with passwords end up in logs.
    model_config = SettingsConfigDict(env_prefix="WORKYARD_", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Field(default=Path(".workyard"), description="Where the embedded default keeps its state.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the data dir.")
    broker_url: str | None = Field(
        default=None, description="Celery broker (Redis or RabbitMQ); default embedded Redis."
    )
    redis_url: str | None = Field(default=None, description="Redis for leases and dedup; default embedded Redis.")

    api_host: str = "127.0.0.1"
    api_port: int = 8700
    flower_port: int = 5555

    visibility_timeout_s: int = Field(
        default=15,
        ge=2,
        description="How long a message held by a process that stopped renewing it (it died or froze) stays "
        "held before any live process gives it back to its queue (Redis broker). Live processes renew "
        "what they hold every fifth of it, so a step may run far longer.",
    )
    broker_connection_max_retries: int | None = Field(
        default=None,
        ge=1,
        description="A worker that lost its broker gives up (exits non-zero, for its supervisor to restart it) "
        "after this many reconnect attempts; unset: Celery's default (100).",
    )
    dedup_ttl_s: int = Field(default=7 * 24 * 3600, ge=60, description="How long a step's stored result dedups.")
    run_claim_ttl_ms: int = Field(
        default=5000, ge=500, description="TTL of a running step's claim; renewed while it runs."
    )
    lease_ttl_ms: int = Field(
        default=10_000, ge=500, description="TTL of a mutex lease; renewed while the handler runs."
    )
    lease_wait_ms: int = Field(
        default=30_000, ge=0, description="How long a step waits for a busy mutex before deferring."
    )
    step_watchdog_s: int = Field(default=3600, ge=1, description="Deadline of a step attempt without a timeout_ms.")
    watchdog_grace_s: int = Field(
        default=30, ge=0, description="Added to a step's hard time limit before it counts as lost."
    )

    coordinator_batch: int = Field(default=200, ge=1, description="Reports the coordinator handles per transaction.")
    outbox_sweep_after_s: float = Field(
        default=5.0, ge=0.1, description="Age of an unpublished outbox row before the sweep re-publishes it."
    )
    timer_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="The longest an idle timer loop sleeps. It sleeps until the next timer or attempt deadline "
        "comes due, and what its own process arms wakes it; timers another process arms (the API's SLA clocks "
        "and leases) are found within this.",
    )

    work_lease_ttl_s: float = Field(
        default=60.0, gt=0, le=86_400, description="An agent's claim lease unless the claim asks for another."
    )
    work_stall_after_s: float = Field(
        default=900.0,
        gt=0,
        le=30 * 86_400,
        description="An agent that beats its lease this long without reporting progress is stalled (notified), "
        "unless the item names its own stall ladder.",
    )
    work_claim_transactions: int = Field(
        default=3,
        ge=1,
        le=64,
        description="Claim transactions one API process runs at once. Claim-next calls that find them busy wait "
        "in the process and are claimed together by the next one (one commit for all), instead of each holding "
        "a database connection and contending for the head of the queue.",
    )
    work_claim_batch_max: int = Field(
        default=32, ge=1, le=1000, description="The most claim-next calls one claim transaction serves."
    )
    agent_stale_after_s: float = Field(
        default=90.0,
        gt=0,
        le=86_400,
        description="A registered agent is live while its last heartbeat is at most this old, then stale. "
        "Longer than the beat interval of a default 60 s lease, so one late beat does not make it stale.",
    )
    agent_dead_after_s: float = Field(
        default=600.0,
        gt=0,
        le=30 * 86_400,
        description="A stale agent is dead once its last heartbeat is older than this (longer than "
        "agent_stale_after_s); an agent never heard from is dead.",
    )
    worker_agent_forget_after_s: float = Field(
        default=86_400.0,
        gt=0,
        le=365 * 86_400,
        description="A Celery worker's agent not heard from for this long is deregistered (it leaves the agent "
        "listings; a worker that comes back under the name is registered again). Each deploy of a worker under "
        "a new hostname leaves one behind otherwise.",
    )
    work_item_max_payload_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest payload plus metadata a work item may carry."
    )
    trace_validation_hour: int = Field(
        default=2,
        ge=0,
        le=23,
        description="The hour (UTC, 0-23) at which each tenant's traceability chains are validated every night.",
    )
    remediation_tenant: str = Field(
        default="ops", min_length=1, max_length=64, description="Tenant of remediation items for failed compensations."
    )
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body the API reads (413 above it)."
    )
    admin_token: str | None = Field(
        default=None, description="Bearer token with every scope in every tenant (workyard up creates one)."
    )

    metrics_public: bool = Field(
        default=False,
        description="Let anyone who reaches the API read GET /metrics without a token. Off: it needs an "
        "all-tenant token with the metrics:read (or admin) scope, as its figures span every tenant.",
    )
    pause_refresh_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often a process that dispatches reads again which templates and capabilities are "
        "paused (one small query, not one per dispatch): a pause written elsewhere holds its dispatches within "
        "this long, and an orchestrator sends what a resume left held (or a pause it had not yet seen held) "
        "within as long.",
    )
    metrics_max_age_s: float = Field(
        default=15.0,
        ge=1,
        le=3600,
        description="How old the counts /metrics serves may be (sagas by state, work items by type and status, "
        "dead letters, webhook deliveries): counting whole tables at every scrape would cost as much as the "
        "tables are large, so they are read again this often, from the first scrape on. Lags and queue "
        "depths are read at every scrape.",
    )
    orchestrator_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port on which each orchestrator process serves GET /metrics (Prometheus text format, no "
        "token: bind it where only the scraper reaches it); unset: not served. Give each process on a host its own.",
    )
    orchestrator_metrics_host: str = Field(
        default="127.0.0.1", description="Address the orchestrator's /metrics listens on (0.0.0.0: every interface)."
    )

    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) that encrypt stored secrets (webhook signing secrets), comma-separated: "
        "the first encrypts, any decrypts. Default: a key generated into the data dir (set it in production).",
    )
    ui_session_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Signs and encrypts the operator page's (/ui) session cookies and its CSRF tokens; every API "
        "process behind one address needs the same one. Default on SQLite (one host): a secret generated into the "
        "data dir. On PostgreSQL it must be set: /ui refuses to sign anyone in without it.",
    )
    ui_session_ttl_s: int = Field(
        default=8 * 3600,
        ge=60,
        le=30 * 86_400,
        description="How long an operator stays signed in to /ui (a revoked token ends its sessions at once).",
    )
    webhook_allow_private_targets: bool = Field(
        default=False,
        description="Let webhooks reach loopback, private, unique-local and link-local addresses "
        "(on-premises receivers). Cloud metadata, multicast and unspecified addresses stay refused.",
    )
    webhook_concurrency: int = Field(default=8, ge=1, le=256, description="Webhook POSTs in flight per process.")
    webhook_tenant_concurrency: int = Field(
        default=2, ge=1, le=256, description="Webhook POSTs of one tenant in flight at once, across every process."
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=120, description="How long a webhook POST may take.")

    # Fault injection for the test suite and for trying failures by hand: every message that
    # workyard publishes (dispatches and reports) is published twice.
    fault_duplicate_delivery: bool = False

    @model_validator(mode="after")
    def _dead_after_stale(self) -> Settings:
        if self.agent_dead_after_s <= self.agent_stale_after_s:
            raise ValueError("WORKYARD_AGENT_DEAD_AFTER_S must be longer than WORKYARD_AGENT_STALE_AFTER_S")
        if self.worker_agent_forget_after_s < self.agent_dead_after_s:
            raise ValueError("WORKYARD_WORKER_AGENT_FORGET_AFTER_S must be at least WORKYARD_AGENT_DEAD_AFTER_S")
        return self

    @field_validator("secret_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        # Refused when the settings are read, not at the first webhook a tenant registers.
        if value is None:
            return None
        keys = [k.strip() for k in value.get_secret_value().split(",") if k.strip()]
        for key in keys:
            try:
                raw = base64.urlsafe_b64decode(key.encode())
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    "WORKYARD_SECRET_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated; make one "
                    "with python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
                )
        if not keys:
            raise ValueError("WORKYARD_SECRET_KEY is empty")
        return value

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def embedded_redis(self) -> bool:
        """True when workyard must start (or find) its own Redis in the data dir."""
        return self.broker_url is None or self.redis_url is None

    @property
    def redis_socket(self) -> Path:
        path = self.data_path / "redis.sock"
        if len(str(path)) <= _MAX_SOCKET_PATH:
            return path
        # Too long for a Unix socket: use a stable short path derived from the data dir.
        digest = hashlib.sha256(str(self.data_path).encode()).hexdigest()[:16]
        return Path("/tmp") / f"workyard-{digest}.sock"

    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_path / 'workyard.db'}"

    def effective_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        return f"unix://{self.redis_socket}?db=0"

    def effective_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"redis+socket://{self.redis_socket}?virtual_host=1"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that makes a child process see the same settings as this one."""
    env = dict(os.environ)
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            env[f"WORKYARD_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    env["WORKYARD_DATA_DIR"] = str(settings.data_path)
    return env
