"""Cohorts: identical subscriptions share one evaluation, and evaluations follow changes.

Subscribers with the same document, operation, variables, audience (who they are, as
visibility sees it) and origin (media URLs start with it) form one `Cohort`. A cohort
remembers the events its list holds now, each with a hash of its selected fields; that
is all it keeps, never rows.

Committed writes arrive as `Touched` ids (db/notify.py). The `Hub` gathers them over a
window (POPMAP_LIVE_WINDOW_MS), then resolves them in one statement for every cohort of
the process: the touched events, the events of touched businesses, and where each lies.
A cohort whose box holds none of those places and whose list holds none of those events,
or whose `filter.ids` names none of them, is skipped: such a write costs it nothing.
Every other cohort runs its list query (live/query.py) restricted to its candidates, one
statement per window (per `first` events), and diffs the answer against what it
remembered: ADDED (now in, before not), UPDATED (in both, selected fields changed),
REMOVED (before in, now not). Each change is serialised once and sent to every
subscriber of the cohort.

`refresh_all` (a notification that could not list its ids, or the listening connection
lost and regained) makes every cohort read its whole list again and send what differs:
subscribers are told what changed while nobody listened.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from strawberry.types.graphql import OperationType

from popmap_gql import observe
from popmap_gql.api.context import Context
from popmap_gql.api.errors import format_error
from popmap_gql.api.query import PAGE
from popmap_gql.api.schema import PopmapSchema
from popmap_gql.auth.viewer import Viewer
from popmap_gql.config import Settings
from popmap_gql.db.client import fetch
from popmap_gql.db.lists import Near
from popmap_gql.db.notify import Touched
from popmap_gql.errors import ServiceUnavailable
from popmap_gql.live.query import ID_KEY, LiveQuery
from popmap_gql.observe import RequestFacts
from popmap_gql.read.ids import decode_id, lookup_pk

__all__ = ["MAX_EVENTS", "Cohort", "CohortKey", "Hub", "LiveRefused", "Subscriber", "coded"]

logger = logging.getLogger(__name__)

# A cohort's list holds at most this many events: a subscription whose filter shows more
# is refused (narrow the box), so no cohort holds or re-reads without bound.
MAX_EVENTS = 20_000
# After a database fault, a cohort retries its evaluation this long later.
RETRY_SECONDS = 1.0
_ROUTING_SQL = (
    "SELECT e.id, e.latitude, e.longitude FROM event e WHERE e.id = ANY($1)"
    " OR e.host_business_id = ANY($2)"
    " OR e.id IN (SELECT p.event_id FROM participation p WHERE p.business_id = ANY($2))"
)


class LiveRefused(Exception):
    """The subscription's list query was refused: `errors` as the client gets them."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0].get("message", "refused") if errors else "refused")
        self.errors = errors


class Subscriber(Protocol):
    def deliver(self, payloads: list[bytes]) -> None:
        """Queue one window's `next` payloads (`{"data": ...}` serialised) for the client."""

    def end(self, errors: list[dict[str, Any]]) -> None:
        """End the subscription with an `error` message carrying `errors` (it leaves the
        cohort)."""


# (document text, operation name, coerced variables, user, staff, client, scopes, origin)
CohortKey = tuple[str, str | None, bytes, int | None, bool, str | None, frozenset[str], str]


@dataclass(frozen=True, slots=True)
class _Place:
    latitude: float
    longitude: float


@dataclass(eq=False)
class Cohort:
    key: CohortKey
    query: LiveQuery
    viewer: Viewer
    request: Request
    first: int
    members: set[Subscriber] = field(default_factory=set)
    known: dict[int, bytes] = field(default_factory=dict)  # event id -> hash of its fields
    loaded: bool = False
    pending: set[int] = field(default_factory=set)
    pending_all: bool = False
    # what an evaluation under way read before its changes reach `known`
    evaluating: set[int] = field(default_factory=set)
    evaluating_all: bool = False
    worker: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # What routing reads of the filter before any statement: the events `ids` names, the
    # box (south, north, west, east) and the circle; None when it has none, or one routing
    # cannot read (the list query itself decides: routing never drops an event it holds).
    watched: frozenset[int] | None = field(init=False, default=None)
    box: tuple[float, float, float, float] | None = field(init=False, default=None)
    circle: Near | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        flt = self.query.filter
        if (ids := flt.get("ids")) is not None:
            # One ID given for the list is a list of that one, as GraphQL coerces it; an
            # ID the list would refuse names nothing (its cohort never gets past its read).
            given = [ids] if isinstance(ids, str) else ids
            pks = (lookup_pk("Event", i) for i in given if isinstance(i, str))
            self.watched = frozenset(pk for pk in pks if pk is not None)
        with contextlib.suppress(KeyError, TypeError, ValueError):
            box = flt["bbox"]
            self.box = (
                float(box["south"]),
                float(box["north"]),
                float(box["west"]),
                float(box["east"]),
            )
        with contextlib.suppress(KeyError, TypeError, ValueError):
            near = flt["near"]
            self.circle = Near(
                float(near["latitude"]), float(near["longitude"]), float(near["radiusKm"])
            )

    def in_box(self, place: _Place) -> bool:
        """Whether the filter's box and circle (if any) hold `place`: a necessary
        condition for an event to be in the list, checked before any statement."""
        latitude, longitude = place.latitude, place.longitude
        if self.box is not None:
            south, north, west, east = self.box
            if not south <= latitude <= north:
                return False
            if west <= east and not west <= longitude <= east:
                return False
            if west > east and east < longitude < west:  # a box across the antimeridian
                return False
        circle = self.circle
        if circle is None:
            return True
        # The distance the list's SQL computes, in Python (the same double); a hair of
        # slack all the same, as routing must never drop an event the list holds.
        return circle.distance_km(latitude, longitude) <= circle.radius_km * (1 + 1e-9)


class Hub:
    """The process's cohorts, the window that gathers changes, and the evaluations."""

    def __init__(self, schema: PopmapSchema, settings: Settings) -> None:
        self.schema = schema
        self.settings = settings
        self.cohorts: dict[CohortKey, Cohort] = {}
        self._touched = Touched()
        self._window: asyncio.TimerHandle | None = None
        # evaluations and first reads at once: leave most of the pool to HTTP requests
        self._slots = asyncio.Semaphore(max(1, settings.db_pool_size // 2))

    # --- subscribers ---------------------------------------------------------------------

    async def join(
        self,
        key: CohortKey,
        query: LiveQuery,
        viewer: Viewer,
        request: Request,
        subscriber: Subscriber,
        cost: int,
    ) -> Cohort:
        """Add `subscriber` to the cohort of `key`, reading its list first if it is new
        (LiveRefused when the list query is refused or the database fails it)."""
        cohort = self.cohorts.get(key)
        if cohort is None:
            per_event = max(1, cost)
            first = max(1, min(PAGE.cap, self.settings.max_query_cost // (per_event + 2)))
            cohort = Cohort(key, query, viewer, request, first)
            cohort.members.add(subscriber)
            self.cohorts[key] = cohort
            try:
                # a slot as an evaluation takes: a reconnect storm's first reads leave
                # most of the pool to HTTP requests too
                async with cohort.lock, self._slots:
                    now = await self._read_all(cohort)
                    cohort.known = {event_id: digest for event_id, (digest, _) in now.items()}
                    cohort.loaded = True
            except ServiceUnavailable as exc:
                # a fault of the database, not of the connection: this subscription is
                # refused (the client may retry), and the socket stays open
                self.leave(cohort, subscriber)
                cause = exc.__cause__ or exc
                logger.warning("live: a first read failed (%s); subscription refused", cause)
                raise LiveRefused([coded(exc.message, exc.code)]) from None
            except BaseException:
                self.leave(cohort, subscriber)
                raise
            self._note_cohorts()
            return cohort
        cohort.members.add(subscriber)
        if not cohort.loaded:
            try:
                async with cohort.lock:  # the first subscriber's read decides
                    pass
                if not cohort.loaded:  # it failed: so does this one (the client may retry)
                    message = "the list could not be read now; subscribe again"
                    raise LiveRefused([coded(message, "SERVICE_UNAVAILABLE")])
            except BaseException:  # that, or this subscriber's socket closed meanwhile
                self.leave(cohort, subscriber)
                raise
        return cohort

    def leave(self, cohort: Cohort, subscriber: Subscriber) -> None:
        cohort.members.discard(subscriber)
        if not cohort.members and self.cohorts.get(cohort.key) is cohort:
            del self.cohorts[cohort.key]
            if cohort.worker is not None:
                cohort.worker.cancel()
            self._note_cohorts()

    # --- changes -------------------------------------------------------------------------

    def touched(self, touched: Touched) -> None:
        """Committed writes touched these ids: evaluate once the window closes."""
        self._touched |= touched
        if self._window is None:
            loop = asyncio.get_running_loop()
            self._window = loop.call_later(self.settings.live_window_ms / 1000, self._close_window)

    def refresh_all(self) -> None:
        """Every cohort re-reads its whole list (what changed while nobody listened)."""
        self.touched(Touched(everything=True))

    def _close_window(self) -> None:
        self._window = None
        touched, self._touched = self._touched, Touched()
        if touched:
            task = asyncio.create_task(self._route(touched, time.perf_counter()))
            task.add_done_callback(_log_failure)

    async def _route(self, touched: Touched, started: float) -> None:
        cohorts = list(self.cohorts.values())
        if not cohorts:
            return
        if touched.everything:
            for cohort in cohorts:
                cohort.pending_all = True
                self._kick(cohort, started)
            return
        places: dict[int, _Place | None] = dict.fromkeys(touched.events)
        try:
            with _statements_counted("live-routing", started):
                ids = [sorted(touched.events), sorted(touched.businesses)]
                rows = await fetch(_ROUTING_SQL, ids)
        except ServiceUnavailable:
            logger.warning("live: could not read the touched events; every list is re-read")
            self.refresh_all()
            return
        for row in rows:
            places[row["id"]] = _Place(row["latitude"], row["longitude"])
        for cohort in cohorts:
            # An evaluation under way may have read an event before this write and not
            # yet added it to `known`: it is relevant too, or its leaving would be lost.
            relevant = {
                event_id
                for event_id, place in places.items()
                if (cohort.watched is None or event_id in cohort.watched)
                and (
                    not cohort.loaded
                    or cohort.evaluating_all
                    or event_id in cohort.known
                    or event_id in cohort.evaluating
                    or (place is not None and cohort.in_box(place))
                )
            }
            if relevant:
                cohort.pending |= relevant
                self._kick(cohort, started)

    def _kick(self, cohort: Cohort, started: float) -> None:
        if cohort.worker is None or cohort.worker.done():
            cohort.worker = asyncio.create_task(self._evaluate(cohort, started))
            cohort.worker.add_done_callback(_log_failure)

    async def _evaluate(self, cohort: Cohort, started: float) -> None:
        """Drain the cohort's pending ids: one statement per `first` of them."""
        while (cohort.pending or cohort.pending_all) and cohort.members:
            failed = False
            refused: list[dict[str, Any]] = []
            # the cohort's lock before a slot, as join takes them: a cohort waiting for its
            # first read (a slot) can never hold up an evaluation holding one
            async with cohort.lock, self._slots:
                everything, cohort.pending_all = cohort.pending_all, False
                ids, cohort.pending = sorted(cohort.pending), set()
                cohort.evaluating, cohort.evaluating_all = set(ids), everything
                try:
                    if everything:
                        now = await self._read_all(cohort)
                        candidates = set(now) | set(cohort.known)
                    else:
                        now = await self._read(cohort, ids)
                        candidates = set(ids)
                except ServiceUnavailable as exc:
                    logger.warning("live: evaluation failed (%s); retrying", exc)
                    cohort.pending.update(ids)
                    cohort.pending_all |= everything
                    failed = True
                except LiveRefused as exc:
                    refused = exc.errors
                else:
                    self._send(cohort, candidates, now, started)
                    if len(cohort.known) > MAX_EVENTS:
                        refused = _too_many()
                finally:
                    cohort.evaluating, cohort.evaluating_all = set(), False
            if refused:  # the list outgrew what a subscription may hold: it ends
                for subscriber in list(cohort.members):
                    subscriber.end(refused)
                return
            if failed:
                await asyncio.sleep(RETRY_SECONDS)

    def _send(
        self,
        cohort: Cohort,
        candidates: set[int],
        now: Mapping[int, tuple[bytes, dict[str, Any]]],
        started: float,
    ) -> None:
        messages: list[bytes] = []
        for event_id in sorted(candidates):
            before = cohort.known.get(event_id)
            after = now.get(event_id)
            if after is None:
                if before is None:
                    continue
                del cohort.known[event_id]
                change = cohort.query.change("REMOVED", event_id, None)
            else:
                digest, nodes = after
                if before == digest:
                    continue
                cohort.known[event_id] = digest
                kind = "UPDATED" if before is not None else "ADDED"
                change = cohort.query.change(kind, event_id, nodes)
            messages.append(orjson.dumps({"data": change}))
        if not messages:
            return
        for subscriber in list(cohort.members):
            subscriber.deliver(messages)
        if (metrics := observe.metrics) is not None:
            metrics.live_messages.inc(len(messages) * len(cohort.members))
            metrics.live_lag.observe(time.perf_counter() - started)

    # --- reading -------------------------------------------------------------------------

    async def _read(
        self, cohort: Cohort, ids: list[int]
    ) -> dict[int, tuple[bytes, dict[str, Any]]]:
        """The cohort's list restricted to `ids`: each event's hash and selections."""
        found: dict[int, tuple[bytes, dict[str, Any]]] = {}
        for start in range(0, len(ids), cohort.first):
            chunk = ids[start : start + cohort.first]
            page, _ = await self._execute(cohort, cohort.query.variables_for(chunk, len(chunk)))
            found.update(page)
        return found

    async def _read_all(self, cohort: Cohort) -> dict[int, tuple[bytes, dict[str, Any]]]:
        """The cohort's whole list (LiveRefused past MAX_EVENTS)."""
        found: dict[int, tuple[bytes, dict[str, Any]]] = {}
        after: str | None = None
        while True:
            page, after = await self._execute(
                cohort, cohort.query.variables_for(None, cohort.first, after)
            )
            found.update(page)
            if len(found) > MAX_EVENTS:
                raise LiveRefused(_too_many())
            if after is None:
                return found

    async def _execute(
        self, cohort: Cohort, variables: dict[str, Any]
    ) -> tuple[dict[int, tuple[bytes, dict[str, Any]]], str | None]:
        """One page of the derived query: events by id, and the cursor after the page if
        there is a next one."""
        context = Context(
            request=cohort.request,
            settings=self.settings,
            loader_setup=self.schema.loader_setup,
            viewer=cohort.viewer,
        )
        with _statements_counted("live", time.perf_counter()):
            result = await self.schema.execute(
                cohort.query.text,
                variable_values=variables,
                context_value=context,
                allowed_operation_types=(OperationType.QUERY,),
            )
        if result.errors:
            for error in result.errors:
                if isinstance(error.original_error, ServiceUnavailable):
                    raise error.original_error
            raise LiveRefused([format_error(error) for error in result.errors])
        data = orjson.loads(orjson.dumps(result.data))
        nodes: dict[int, dict[str, Any]] = {}
        after: str | None = None
        for root in cohort.query.event_roots:
            connection = data[root]
            for edge in connection["edges"]:
                node = dict(edge["node"])
                event_id = decode_id("Event", node.pop(ID_KEY))
                nodes.setdefault(event_id, {})[root] = node
            page_info = connection["pageInfo"]
            after = page_info["endCursor"] if page_info["hasNextPage"] else None
        return {event_id: (_digest(by_root), by_root) for event_id, by_root in nodes.items()}, after

    def _note_cohorts(self) -> None:
        if (metrics := observe.metrics) is not None:
            metrics.live_cohorts.set(len(self.cohorts))


def coded(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """An error as the client gets it: its message, its code and any other extensions."""
    return {"message": message, "extensions": {"code": code, **extensions}}


def _digest(nodes: Mapping[str, Any]) -> bytes:
    return hashlib.blake2b(
        orjson.dumps(nodes, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()


@contextlib.contextmanager
def _statements_counted(request_id: str, started: float) -> Iterator[None]:
    """The statements run within, counted as the live path's (metrics' live_statements)."""
    facts = RequestFacts(request_id=request_id, started=started)
    token = observe.current.set(facts)
    try:
        yield
    finally:
        observe.current.reset(token)
        if (metrics := observe.metrics) is not None and facts.statements:
            metrics.live_statements.inc(facts.statements)


def _too_many() -> list[dict[str, Any]]:
    message = f"the filter shows more than {MAX_EVENTS} events: narrow it (a smaller bbox)"
    return [coded(message, "BAD_USER_INPUT", field="filter")]


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("live: evaluation failed", exc_info=exc)
