"""All configuration, read once from the environment (or a .env file)."""

import hashlib
import secrets
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


# DATABASE_URL may name the driver or not; SQLAlchemy (Alembic) wants it named, asyncpg
# wants it bare. The two conversions live here, and Settings hands out both forms.
def sqlalchemy_url(url: str) -> str:
    """The URL for SQLAlchemy's asyncpg dialect; plain postgresql:// URLs are accepted."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must start with postgresql:// or postgresql+asyncpg://")


def asyncpg_dsn(url: str) -> str:
    """The same URL as asyncpg.connect() wants it (no driver suffix)."""
    return "postgresql://" + sqlalchemy_url(url)[len("postgresql+asyncpg://") :]


def _comma_separated(value: Any) -> Any:
    """`a, b,,c` -> ("a", "b", "c"); anything else is left to pydantic."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Unset means "start the embedded servers" for `items serve` (see app/infrastructure/
    # embedded.py); the app itself always needs both.
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: str = ".data"

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # API processes `items serve` runs on its port (uvicorn's supervisor); the projector
    # runs once, in a child of the supervising process, not in each.
    workers: int = Field(default=1, ge=1, le=64)
    log_level: str = "info"
    # `json`: one JSON object per log line (ts, level, logger, msg, request_id), for log
    # pipelines; `text`: lines for a terminal.
    log_format: Literal["text", "json"] = "text"
    # One log line per request (`items serve --access-log` too).
    access_log: bool = False
    # `production` refuses to start with settings unsafe there (app/bootstrap/safety.py).
    environment: Literal["development", "production"] = "development"
    # In production, writes open to anyone (no API_KEYS) only when this says so.
    allow_open_writes: bool = False

    # Prometheus metrics: counted and served on GET /metrics (false: neither, to measure
    # what they cost, README OPERATIONS).
    metrics_enabled: bool = True
    # GET /metrics is open like /healthz, unless this is true (then, with API_KEYS set, it
    # needs a key, as /api/v1/admin does).
    metrics_require_key: bool = False
    # Where `items projector` and `items relay` serve their own /metrics (0: not at all).
    # The API serves the metrics of the projector it runs on its own port.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # /readyz fails the read_model check once the projection lags more than this many
    # seconds (0: never). Off by default: one shared lag would take every API process
    # out of rotation at once.
    ready_max_lag_seconds: float = Field(default=0.0, ge=0)

    # The write side's asyncpg pool holds up to twice this many connections (the size
    # plus as much overflow, as the SQLAlchemy pool before it).
    db_pool_size: int = Field(default=10, ge=1)
    # Writes fail fast when PostgreSQL is unreachable instead of hanging the client.
    db_connect_timeout: float = Field(default=3.0, gt=0)
    # ... and when it stops answering (a hung server, a network that drops packets): a
    # statement slower than this is abandoned, its connection cut, and the write
    # answers 503.
    db_command_timeout: float = Field(default=5.0, gt=0)
    # A write that waits this long for a free pooled connection (every one busy: more
    # concurrent writes than the pool holds, for longer than they should take) answers
    # 503 write-model-busy with Retry-After, rather than queueing without bound.
    db_pool_timeout: float = Field(default=10.0, gt=0)
    redis_max_connections: int = Field(default=64, ge=1)
    redis_timeout: float = Field(default=1.0, gt=0)
    # REDIS_URL names a Redis Cluster node (true), a single Redis (false), or either:
    # `auto` asks the server (INFO cluster) when the client is made.
    redis_cluster: Literal["auto", "true", "false"] = "auto"

    # Every Redis key starts with this, so several deployments (or test runs) can
    # share one Redis without seeing each other's keys.
    redis_prefix: str = Field(default="items", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Items are spread over this many projection partitions (each with its own Redis
    # hash tag, checkpoint, indexes and owner). Read only when a read model is first
    # made: `items rebuild --partitions N` changes the count of a live one, and the
    # count it chose is kept in PostgreSQL and followed by every process from then on.
    projection_partitions: int = Field(default=1, ge=1, le=64)
    # A projector owns its partitions by leases it renews every second; one not renewed
    # for this long lapses, and another projector takes the partitions over.
    projector_lease_seconds: float = Field(default=5.0, ge=2.0, le=300.0)
    # The API's projector child is killed and started again when its loop has not gone
    # round for this long (stopped, hung on a call that never returns).
    projector_stalled_after: float = Field(default=30.0, ge=1.0, le=3600.0)
    # The API runs a projector with it (false: run `items projector` on its own) ...
    projector_in_process: bool = True
    # ... in a child process of its own, so request load on the API's event loop does not
    # delay projection (app/projection/child.py); false: on that loop.
    projector_in_child: bool = True
    # Set by `items serve --workers N` for its workers, not by hand: the projector runs
    # in a child of the supervising process, so a worker starts none but waits, as the
    # API does, for it to catch up before it accepts connections.
    projector_supervised: bool = False
    projector_batch_size: int = Field(default=500, ge=1, le=10_000)
    projector_poll_interval: float = Field(default=1.0, gt=0)

    # In-process caches of item views (GET by id) and list pages, kept consistent by the
    # projector's change notices (app/queries/cache/); their bound in MiB,
    # pages taking an eighth of it; 0 turns both off.
    view_cache_mb: int = Field(default=64, ge=0, le=65_536)

    # How long a read with a Consistency-Token waits for the projection (then 503).
    consistency_wait_ms: int = Field(default=2000, ge=0, le=60_000)
    # How long a write's answer waits for the read model to include it (then it answers
    # anyway, with Consistency-Pending: true); 0 answers at commit.
    write_visible_wait_ms: int = Field(default=1000, ge=0, le=60_000)
    # How long the API waits at start-up, before it accepts a connection, for what reads
    # need (Redis, a live read model, the projector it runs caught up): past this it
    # starts anyway, and /readyz says what is missing.
    startup_ready_timeout: float = Field(default=30.0, ge=0)

    # The other entry points (README, "Entry points: GraphQL, gRPC, NATS"). `items grpc`
    # listens on HOST:GRPC_PORT.
    grpc_port: int = Field(default=50051, ge=1, le=65535)
    # The GraphiQL page on GET /graphql in a browser; off, /graphql answers queries only.
    graphiql: bool = False
    # NATS_URL=nats://host:4222: the outbox relay (`items relay`) publishes every event to
    # JetStream. Unset: nothing connects to NATS.
    nats_url: str | None = None
    # The stream the relay publishes to (created if missing), and the subjects' prefix:
    # `<prefix>.<item_id>`, so a consumer filters one item, or all with `<prefix>.>`.
    nats_stream: str = Field(default="ITEMS", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    nats_subject_prefix: str = Field(
        default="items.events", pattern=r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$"
    )
    # Seconds JetStream remembers a Nats-Msg-Id to drop a second copy: set on a stream the
    # relay creates; never below RELAY_RETRY_HORIZON (the relay refuses a stream whose
    # window is shorter).
    nats_duplicate_window: float = Field(default=120.0, ge=1.0, le=86_400.0)
    # Seconds one run of the relay retries an unacknowledged publish (the same
    # Nats-Msg-Id) before it starts over from its checkpoint.
    relay_retry_horizon: float = Field(default=30.0, ge=1.0, le=3600.0)
    # One relay publishes at a time: it holds a lease in PostgreSQL, renewed every second,
    # lapsing after this long (a standby then takes over).
    relay_lease_seconds: float = Field(default=5.0, ge=2.0, le=300.0)
    # Events read per batch; the checkpoint moves after each batch the broker acknowledged.
    relay_batch_size: int = Field(default=200, ge=1, le=10_000)
    # `items serve` runs a relay on its event loop too (with NATS_URL set).
    relay_in_serve: bool = False

    # Signs list cursors and consistency tokens so that a tampered one is refused. Unset:
    # with the embedded servers, a key made once and kept in DATA_DIR; else a random key
    # per process, which breaks cursors, tokens and idempotent replays across restarts
    # and processes (`items` says so at start). SecretStr: a repr or log of the settings
    # shows stars, never the key.
    secret_key: SecretStr | None = Field(default=None, min_length=16)
    _random_key: SecretStr = PrivateAttr(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32))
    )

    # API_KEYS=k1,k2: writes and /api/v1/admin then need `Authorization: Bearer <key>`
    # (app/api/auth.py). SecretStr keeps the keys out of any repr or log of the settings.
    # Comma-separated, not JSON: NoDecode hands the raw string to the validator below.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # Reads under /api/ need a key too (only when API_KEYS is set).
    read_requires_key: bool = False
    # CORS_ORIGINS=https://a.example,https://b.example; empty: no CORS headers at all.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _comma_separated(value)

    @property
    def api_key_digests(self) -> tuple[bytes, ...]:
        """SHA-256 of each key: what requests are compared against (never the keys)."""
        return tuple(
            hashlib.sha256(key.get_secret_value().encode()).digest() for key in self.api_keys
        )

    @model_validator(mode="after")
    def _window_covers_the_retries(self) -> "Settings":
        # A retry later than the window would store a second copy of the same event.
        if self.nats_duplicate_window < self.relay_retry_horizon:
            raise ValueError(
                "NATS_DUPLICATE_WINDOW must be at least RELAY_RETRY_HORIZON (a retry after "
                "the window would publish a duplicate)"
            )
        return self

    @field_validator("secret_key", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: Any) -> Any:
        # SECRET_KEY= (as docker compose passes an unset ${SECRET_KEY:-}) means unset.
        return None if value == "" else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        return None if not value else sqlalchemy_url(value)

    def require_urls(self) -> tuple[str, str]:
        if not self.database_url or not self.redis_url:
            raise RuntimeError("DATABASE_URL and REDIS_URL must be set (or use `items serve`)")
        return self.database_url, self.redis_url

    @property
    def signing_key(self) -> str:
        """What cursors and tokens are signed with: SECRET_KEY, or this process's own."""
        return (self.secret_key or self._random_key).get_secret_value()

    @property
    def random_signing_key(self) -> bool:
        return self.secret_key is None

    @property
    def database_dsn(self) -> str:
        """DATABASE_URL as asyncpg.connect() takes it."""
        return asyncpg_dsn(self.require_urls()[0])
