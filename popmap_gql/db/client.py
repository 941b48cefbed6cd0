"""The database client: where asyncpg's and Tortoise's failures enter our code, the one
way raw SQL is sent (`fetch`, `execute`), and the one module that relies on Tortoise's
internals.

Tortoise's asyncpg client with one change of behaviour: a fault of PostgreSQL or of the
way to it (refused or dropped connections, a server shutting down or starting up, a
statement cancelled by `statement_timeout`, no pooled connection free within the pool
timeout) leaves every query, transaction and pool acquisition as `DatabaseUnavailable`,
raised from the driver's exception. Everything above this module sees one exception
for "PostgreSQL cannot serve now" and answers 503; anything else (a bug, a constraint)
passes through unchanged.

Tortoise loads this module as the connection's engine (`engine` in `orm.tortoise_config`)
and instantiates `client_class`. The rest of the package sends its raw SQL through
`fetch` and `execute` here, and types a transaction's connection as `Connection`.

Tortoise's private APIs used here, and what each use assumes (tortoise-orm is pinned
exactly in pyproject.toml; `tests/test_engine_boundary.py` fails on any of them, or on any
import from a Tortoise module not listed there as public, anywhere else in the package).
To upgrade, re-read each against the new release's `backends/asyncpg/client.py`,
`backends/base/client.py`, `connection.py` and `migrations/recorder.py`, then run
`tests/test_faults.py`, `tests/test_migrate.py` and the suite:

- `tortoise.backends.asyncpg.client.AsyncpgDBClient` and `TransactionWrapper`, subclassed:
  the pool's client and a transaction's; their `execute_*` methods borrow a connection
  through `acquire_connection()` (overridden: ours bounds the wait) and run the driver's
  call through `_translate_exceptions(func, *args)`, with the statement's text first in
  `args` (overridden: ours counts, traces and converts faults).
- `AsyncpgDBClient._pool` (the asyncpg pool, None until the first connection),
  `_pool_init_lock` (the lock under which one task creates it) and
  `create_connection(with_db=True)` (creates `_pool`).
- `_in_transaction()`, what `tortoise.transactions.in_transaction()` calls for its
  context (overridden on both clients: ours gives the connection back however the
  transaction ends); `TransactionWrapper(client)` and `_Transaction(transaction)` for a
  nested one, whose `NestedTransactionContext` uses savepoints.
- `tortoise.backends.base.client.TransactionContext` (the context's base class),
  `NestedTransactionContext`, and `BaseDBAsyncClient` (the type of any connection,
  `Connection` here).
- `TransactionWrapper._connection` (the asyncpg connection the transaction runs on, set
  before `begin()`), `_finalized` (true once it committed or rolled back), `begin`,
  `commit`, `rollback` and `connection_name`.
- `tortoise.connection.get_connections().set(name, client)` and `.reset(token)`: within
  the transaction, `connections.get(name)` (so every model query) answers with its client.
- `tortoise.migrations.recorder.MigrationRecorder`: the default of its `table_name` is
  the table where `tortoise.migrations.api.migrate` records the applied migrations
  (`MIGRATION_RECORD_TABLE`, read by `db/migrate.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import (
    BaseDBAsyncClient,
    NestedTransactionContext,
    TransactionContext,
)
from tortoise.connection import connections, get_connections
from tortoise.exceptions import DBConnectionError, TransactionManagementError
from tortoise.migrations.recorder import MigrationRecorder

from popmap_gql import observe, tracing
from popmap_gql.errors import DatabaseUnavailable

__all__ = [
    "DEFAULT_POOL_TIMEOUT",
    "MIGRATION_RECORD_TABLE",
    "Connection",
    "PopmapDBClient",
    "breaks_connection",
    "client_class",
    "execute",
    "fault_kind",
    "fetch",
]

T = TypeVar("T")

# Where Tortoise records the migrations it applied: its recorder's default table.
MIGRATION_RECORD_TABLE: str = inspect.signature(MigrationRecorder).parameters["table_name"].default

# The pool's client, or a transaction's (what `in_transaction()` gives).
Connection = BaseDBAsyncClient


async def fetch(
    sql: str, params: Sequence[Any] = (), *, on: Connection | None = None
) -> list[dict[str, Any]]:
    """The rows of one statement, each by column name. It runs on a pooled connection, or
    on `on` (a transaction's connection) for a statement that belongs to a transaction.
    `sql` is our own text; every value travels in `params` ($1, $2, ...)."""
    db = connections.get("default") if on is None else on
    rows: list[dict[str, Any]] = await db.execute_query_dict(sql, list(params))
    return rows


async def execute(sql: str, params: Sequence[Any] = (), *, on: Connection | None = None) -> None:
    """Run one statement whose rows nobody reads, like `fetch`."""
    db = connections.get("default") if on is None else on
    await db.execute_query(sql, list(params))


DEFAULT_POOL_TIMEOUT = 10.0
# A timeout while waiting for a connection: all are busy, or connecting takes too long.
_NO_CONNECTION = "no connection within the pool timeout"

# Failures that say nothing about the statement and everything about the server or the
# network: retrying later (after a restart, a failover, a load spike) can succeed.
_UNREACHABLE = (
    OSError,  # refused, reset, no such socket, unreachable network
    asyncpg.PostgresConnectionError,  # 08xxx: the connection failed or was dropped
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01: terminated by a (fast) shutdown
    asyncpg.CrashShutdownError,  # 57P02
    DBConnectionError,  # Tortoise's own, when creating the pool
)


def breaks_connection(exc: BaseException | None) -> bool:
    """The connection that raised `exc` must not be used again: the server or the network
    dropped it, or the driver lost track of its protocol state (seen when PostgreSQL shuts
    down in the middle of a statement: "cannot switch to state ...")."""
    return isinstance(exc, (*_UNREACHABLE, asyncpg.InternalClientError))


def fault_kind(exc: BaseException, *, timeout: str = "statement timeout") -> str | None:
    """What kind of database fault `exc` is, or None when it is not one.

    `timeout` names what a TimeoutError means where it was raised: while running a
    statement it is the client-side command timeout behind statement_timeout.
    """
    if isinstance(exc, TimeoutError):
        return timeout
    if isinstance(exc, asyncpg.QueryCanceledError):
        return "statement timeout"  # our statement_timeout
    if isinstance(exc, asyncpg.InsufficientResourcesError):
        return "server out of resources"  # 53xxx, e.g. too many connections
    if isinstance(exc, _UNREACHABLE):
        return "unreachable"
    if isinstance(exc, asyncpg.InternalClientError):
        return "connection broken"
    return None


async def _converted(
    call: Callable[[], Awaitable[T]], *, timeout_kind: str = "statement timeout"
) -> T:
    try:
        return await call()
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        kind = fault_kind(exc, timeout=timeout_kind)
        if kind is None:
            raise
        if (metrics := observe.metrics) is not None:
            metrics.db_faults.labels(kind).inc()
        raise DatabaseUnavailable(kind) from exc


class _PoolConnection:
    """A connection borrowed from the pool for one statement; gives up after the timeout."""

    __slots__ = ("client", "connection")

    def __init__(self, client: PopmapDBClient) -> None:
        self.client = client
        self.connection: Any = None

    async def __aenter__(self) -> Any:
        self.connection = await self.client.borrow()
        return self.connection

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        await self.client.give_back(self.connection, broken=breaks_connection(exc))


class PopmapDBClient(AsyncpgDBClient):
    """Tortoise's asyncpg client whose every failure of the database is DatabaseUnavailable.

    `pool_timeout` (a connection option, seconds) bounds the wait for a pooled
    connection, including creating the pool and connecting.
    """

    def __init__(
        self, *args: Any, pool_timeout: float = DEFAULT_POOL_TIMEOUT, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.pool_timeout = pool_timeout

    async def _translate_exceptions(
        self, func: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        # Every execute_* method of Tortoise's client passes through here.
        observe.count_statement()
        with tracing.sql_span(args):
            return await _converted(
                lambda: super(PopmapDBClient, self)._translate_exceptions(func, *args, **kwargs)
            )

    async def borrow(self) -> Any:
        """A connection from the pool (created on first use), or DatabaseUnavailable."""
        connection = await _converted(self._acquire, timeout_kind=_NO_CONNECTION)
        if (metrics := observe.metrics) is not None:
            metrics.pool_in_use.inc()
        return connection

    async def _acquire(self) -> Any:
        pool = self._pool
        if pool is not None and pool.get_idle_size() > 0:
            # An open connection is free: nothing to wait for. Skipping the timer here
            # matters on a response-cache hit, whose one statement is this cheap.
            return await pool.acquire()
        metrics = observe.metrics
        if metrics is not None:
            metrics.pool_waiting.inc()
        try:
            async with asyncio.timeout(self.pool_timeout):
                return await self._acquire_unbounded()
        finally:
            if metrics is not None:
                metrics.pool_waiting.dec()

    async def _acquire_unbounded(self) -> Any:
        if self._pool is None:
            async with self._pool_init_lock:  # one task creates it; the others wait
                if self._pool is None:
                    await self.create_connection(with_db=True)
        assert self._pool is not None
        return await self._pool.acquire()

    async def give_back(self, connection: Any, *, broken: bool = False) -> None:
        if self._pool is not None and connection is not None:
            if (metrics := observe.metrics) is not None:
                metrics.pool_in_use.dec()
            if broken:
                # The pool replaces it on the next acquire. One the server closed is
                # already back in the pool, detached from this proxy, which refuses.
                with contextlib.suppress(asyncpg.InterfaceError):
                    connection.terminate()
            await self._pool.release(connection)

    def acquire_connection(self) -> Any:
        return _PoolConnection(self)

    def _in_transaction(self) -> TransactionContext:
        return _PooledTransaction(_Transaction(self), self)


class _Transaction(TransactionWrapper):
    """Tortoise's transaction client, converting faults like PopmapDBClient."""

    async def _translate_exceptions(
        self, func: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        observe.count_statement()
        with tracing.sql_span(args):
            return await _converted(
                lambda: super(_Transaction, self)._translate_exceptions(func, *args, **kwargs)
            )

    async def commit(self) -> None:
        await _converted(super().commit)

    async def rollback(self) -> None:
        await _converted(super().rollback)

    def _in_transaction(self) -> TransactionContext:
        return NestedTransactionContext(_Transaction(self))


class _PooledTransaction(TransactionContext):
    """A transaction on a pooled connection that is given back however the transaction ends.

    Tortoise's own context keeps the connection when BEGIN fails (as it does on a
    connection that PostgreSQL dropped while it sat in the pool): each restart of the
    server would then shrink the pool for good.
    """

    client: _Transaction

    def __init__(self, client: _Transaction, parent: PopmapDBClient) -> None:
        self.client = client
        self.parent = parent
        self.token: Any = None

    async def __aenter__(self) -> _Transaction:
        connection = await self.parent.borrow()
        self.client._connection = connection
        try:
            await self.client.begin()
        except BaseException:
            await self.parent.give_back(connection)
            raise
        self.token = get_connections().set(self.client.connection_name, self.client)
        return self.client

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        try:
            if not self.client._finalized:
                if exc_type is None:
                    await self.client.commit()
                elif exc_type is not TransactionManagementError:  # nothing left to roll back
                    await self.client.rollback()
        finally:
            get_connections().reset(self.token)
            await self.parent.give_back(self.client._connection, broken=breaks_connection(exc_val))


client_class = PopmapDBClient
