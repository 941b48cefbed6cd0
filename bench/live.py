"""Live updates under load: many `eventsChanged` subscribers, a writer through the API.

    .venv/bin/python bench/live.py                      # 5,000 subscribers, 5 writes/s, 60 s
    .venv/bin/python bench/live.py --subscribers 500 --seconds 20

Starts `popmap-gql serve --workers 2` on the benchmark database (bench/dataset.py,
BENCH_DATABASE_URL or the embedded PostgreSQL) with POPMAP_METRICS=true, then
`--clients` client processes (asyncio, the `websockets` package) that open one socket per
subscriber (a subscriber is one open map: one socket, one token), each with one
`eventsChanged(filter: {bbox, upcoming: false})` subscription over graphql-transport-ws.
Viewports are tiles of three sizes over Austin (the whole city, 0.1 degree and 0.025
degree squares), as a map client snaps them; most subscribers are anonymous, the rest
signed in as a few people (staff and four owners), many of them on the same tiles.

Once every subscriber is in place, a writer sends `--writes-per-second` writes for
`--seconds` through the API: staff move approved events, reject approved ones and approve
pending or rejected ones; owners change their own events' titles and join and leave
their verified businesses to events. Each touches an event no other write touched
within the previous ten, so no two writes fall in one evaluation window.

From each write's state before and after, the driver computes what every subscriber
must get (its box, and what its viewer may see: approved events, an owner's own events,
everything for staff) and compares it with what each received: delivered/expected,
`wrong` (another change kind), `extra` (not expected) and `leaked` (about an event the
viewer could not see before or after). Latency runs from the write's HTTP response to
the client's receipt (time.monotonic, one clock for every process on the machine).
Statements per write are `popmap_live_statements_total` over the writes (the fan-out's
own SQL: routing and cohort evaluations; the mutation's own statements are not in it),
beside `cohorts`, the cohorts both workers hold (`popmap_live_cohorts`) once all have
subscribed: a write costs the cohorts it reaches, not all of them;
CPU is the server's processes' CPU time over the write phase (100 = one core; the
machine has two), RSS per 1,000 subscribers is the growth of the server's resident memory
from idle to all subscribed. Every change is undone at the end (SQL), so the other
benchmarks see the data set as built.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402

from bench import dataset  # noqa: E402
from bench.run import (  # noqa: E402
    RUN_DIR,
    VENV_BIN,
    Server,
    clean_environment,
    free_port,
    log,
    mint_token,
    wait_ready,
)

SUBSCRIPTION = """subscription Live($filter: EventFilter) {
  eventsChanged(filter: $filter) {
    change eventId event { title status latitude longitude businesses { name } }
  }
}"""
# Austin, where every event of the data set is (latitude 30.1-30.5, longitude -97.95 to
# -97.55), with a margin; tiles of three sizes cover it.
SOUTH, WEST, SPAN = 30.05, -98.0, 0.5
TILE_SIZES = ((1, 0.10), (5, 0.40), (20, 0.50))  # (tiles per side, share of subscribers)
SIGNED_IN_SHARE = 0.15
OWNERS = 4
STAFF = "staff"
WRITE_CYCLE = ("move", "title", "reject", "join", "approve", "leave")
DRAIN_SECONDS = 5.0
CONNECT_CONCURRENCY = 100
PATIENCE_SECONDS = 120.0


def event_gid(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"Event:{event_id}".encode()).decode().rstrip("=")


# --- the model: what each viewer sees ---------------------------------------------------


@dataclass(frozen=True)
class State:
    title: str
    latitude: float
    longitude: float
    status: str
    creator: int | None
    businesses: int = 0  # a version: each join or leave changes the list


@dataclass(frozen=True)
class Box:
    south: float
    north: float
    west: float
    east: float

    def holds(self, state: State) -> bool:
        return (
            self.south <= state.latitude <= self.north and self.west <= state.longitude <= self.east
        )

    def variables(self) -> dict[str, Any]:
        box = {"south": self.south, "north": self.north, "west": self.west, "east": self.east}
        return {"filter": {"bbox": box, "upcoming": False}}


@dataclass(frozen=True)
class Subscriber:
    index: int
    viewer: str  # "anonymous", STAFF or "user:<id>"
    box: Box


def may_see(viewer: str, state: State) -> bool:
    return (
        state.status == "APPROVED"
        or viewer == STAFF
        or (state.creator is not None and viewer == f"user:{state.creator}")
    )


def shows(subscriber: Subscriber, state: State) -> bool:
    return may_see(subscriber.viewer, state) and subscriber.box.holds(state)


def expected_change(subscriber: Subscriber, before: State, after: State) -> str | None:
    was, now = shows(subscriber, before), shows(subscriber, after)
    if now and not was:
        return "ADDED"
    if was and not now:
        return "REMOVED"
    if was and now and before != replace(after, creator=before.creator):
        return "UPDATED"
    return None


@dataclass
class Write:
    seq: int
    kind: str
    event_id: int
    before: State
    after: State
    sent: float = 0.0
    answered: float = 0.0
    ok: bool = False


# --- the client processes ---------------------------------------------------------------


async def client_main(spec_path: Path) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    spec = json.loads(await asyncio.to_thread(spec_path.read_text))
    url: str = spec["url"]
    received: list[tuple[int, str, str, float]] = []
    closes: dict[int, Any] = {}
    ready = 0
    failed: list[str] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sockets: list[Any] = []
    settled = asyncio.Event()

    def settle() -> None:
        if ready + len(failed) >= len(spec["subscribers"]):
            settled.set()

    async def one(entry: dict[str, Any]) -> None:
        nonlocal ready
        index = entry["i"]
        try:
            async with gate:
                socket = await connect(
                    url,
                    subprotocols=[Subprotocol("graphql-transport-ws")],
                    ping_interval=None,
                    open_timeout=PATIENCE_SECONDS,
                    max_queue=None,
                )
                sockets.append(socket)
                init: dict[str, Any] = {"type": "connection_init"}
                if entry["token"]:
                    init["payload"] = {"Authorization": f"Bearer {entry['token']}"}
                await socket.send(json.dumps(init))
                ack = json.loads(await socket.recv())
                if ack["type"] != "connection_ack":
                    raise RuntimeError(f"no ack: {ack}")
                payload = {"query": SUBSCRIPTION, "variables": entry["variables"]}
                await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                await socket.send('{"type":"ping"}')
                while True:  # the pong: the subscription is in place
                    message = json.loads(await socket.recv())
                    if message["type"] == "pong":
                        break
                    if message["type"] == "error":
                        raise RuntimeError(f"refused: {message}")
            ready += 1
            settle()
        except Exception as exc:  # reported, counted as a failure
            failed.append(f"{index}: {exc!r:.200}")
            settle()
            return
        try:
            async for text in socket:
                now = time.monotonic()
                message = json.loads(text)
                kind = message["type"]
                if kind == "next":
                    change = message["payload"]["data"]["eventsChanged"]
                    received.append((index, change["eventId"], change["change"], now))
                elif kind == "ping":
                    await socket.send('{"type":"pong"}')
                elif kind == "error":
                    failed.append(f"{index}: {message!r:.200}")
        except Exception as exc:  # the socket broke: reported
            closes[index] = repr(exc)[:200]
        else:
            closes[index] = getattr(socket.close_code, "real", socket.close_code)

    _running = [asyncio.create_task(one(entry)) for entry in spec["subscribers"]]
    await settled.wait()  # every subscriber is in place or failed
    print(json.dumps({"ready": ready, "failed": failed[:5], "failures": len(failed)}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
    out = json.dumps({"received": received, "closes": closes, "failed": failed})
    await asyncio.to_thread(Path(spec["out"]).write_text, out)
    print(json.dumps({"done": True}), flush=True)
    os._exit(0)  # closing thousands of sockets one by one adds nothing to measure


# --- the driver -------------------------------------------------------------------------


@dataclass
class World:
    states: dict[int, State]
    owners: list[int]
    owner_events: dict[int, list[int]]
    owner_business: dict[int, int]
    joined: set[tuple[int, int]] = field(default_factory=set)
    future: set[int] = field(default_factory=set)


async def load_world(url: str) -> World:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT id, title, latitude, longitude, status, created_by_id, ends_at > now()"
            " AS future FROM event"
        )
        states = {
            row["id"]: State(
                row["title"], row["latitude"], row["longitude"], row["status"],
                row["created_by_id"],
            )
            for row in rows
        }  # fmt: skip
        future = {row["id"] for row in rows if row["future"]}
        # Owners: people who created approved and other events and own a verified business.
        owners = await conn.fetch(
            "SELECT e.created_by_id AS user_id, min(b.id) AS business_id FROM event e"
            " JOIN business b ON b.owner_id = e.created_by_id AND b.is_verified"
            " GROUP BY e.created_by_id"
            " HAVING count(*) FILTER (WHERE e.status = 'APPROVED') > 0"
            " ORDER BY count(DISTINCT e.id) DESC, e.created_by_id LIMIT $1",
            OWNERS,
        )
        joined = {
            (row["event_id"], row["business_id"])
            for row in await conn.fetch("SELECT event_id, business_id FROM participation")
        }
    finally:
        await conn.close()
    owner_ids = [row["user_id"] for row in owners]
    owner_events: dict[int, list[int]] = defaultdict(list)
    for event_id, state in sorted(states.items()):
        if state.creator in owner_ids and state.status in ("APPROVED", "PENDING"):
            owner_events[state.creator].append(event_id)
    return World(
        states,
        owner_ids,
        dict(owner_events),
        {row["user_id"]: row["business_id"] for row in owners},
        joined,
        future,
    )


def plan_subscribers(count: int, owners: list[int], rng: random.Random) -> list[Subscriber]:
    viewers = [STAFF, *(f"user:{owner}" for owner in owners)]
    sizes = [size for size, _ in TILE_SIZES]
    weights = [share for _, share in TILE_SIZES]
    subscribers = []
    for index in range(count):
        per_side = rng.choices(sizes, weights)[0]
        step = SPAN / per_side
        row, column = rng.randrange(per_side), rng.randrange(per_side)
        box = Box(
            round(SOUTH + row * step, 6),
            round(SOUTH + (row + 1) * step, 6),
            round(WEST + column * step, 6),
            round(WEST + (column + 1) * step, 6),
        )
        viewer = rng.choice(viewers) if rng.random() < SIGNED_IN_SHARE else "anonymous"
        subscribers.append(Subscriber(index, viewer, box))
    return subscribers


class Writer:
    """Chooses each write so that no event is touched twice within ten writes."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        owned = {event_id for events in world.owner_events.values() for event_id in events}
        approved = [
            event_id
            for event_id, state in world.states.items()
            if state.status == "APPROVED" and event_id not in owned
        ]
        rng.shuffle(approved)
        self.movable = approved[: len(approved) // 3]
        self.rejectable = approved[len(approved) // 3 : 2 * len(approved) // 3]
        self.joinable = [e for e in approved[2 * len(approved) // 3 :] if e in world.future]
        self.approvable = [
            event_id
            for event_id, state in world.states.items()
            if state.status in ("PENDING", "REJECTED") and event_id not in owned
        ]
        rng.shuffle(self.approvable)
        self.joins: list[tuple[int, int, int]] = []  # (owner, event, business) to leave
        self.title_turn = 0
        self.recent: list[int] = []

    def next(self, seq: int) -> tuple[Write, str, dict[str, Any], str]:
        """The write, the GraphQL mutation, its variables and who sends it."""
        kind = WRITE_CYCLE[seq % len(WRITE_CYCLE)]
        if kind == "leave" and len(self.joins) < 2:
            kind = "move"
        states = self.world.states
        if kind == "move":
            event_id = self._take(self.movable)
            before = states[event_id]
            after = replace(
                before,
                latitude=round(self.rng.uniform(30.1, 30.5), 6),
                longitude=round(self.rng.uniform(-97.95, -97.55), 6),
            )
            query = (
                "mutation($id: ID!, $lat: Float!, $lng: Float!) { updateEvent(id: $id,"
                " input: {latitude: $lat, longitude: $lng}) { event { id } } }"
            )
            variables = {"id": event_gid(event_id), "lat": after.latitude, "lng": after.longitude}
            who = STAFF
        elif kind == "title":
            owners = [owner for owner in self.world.owners if self.world.owner_events.get(owner)]
            owner = owners[self.title_turn % len(owners)]
            events = self.world.owner_events[owner]
            event_id = events[(self.title_turn // len(owners)) % len(events)]
            self.title_turn += 1
            before = states[event_id]
            after = replace(before, title=f"Live check {seq}")
            query = (
                "mutation($id: ID!, $t: String!) { updateEvent(id: $id, input: {title: $t})"
                " { event { id } } }"
            )
            variables = {"id": event_gid(event_id), "t": after.title}
            who = f"user:{owner}"
        elif kind in ("reject", "approve"):
            event_id = self._take(self.rejectable if kind == "reject" else self.approvable)
            before = states[event_id]
            status = "REJECTED" if kind == "reject" else "APPROVED"
            after = replace(before, status=status)
            query = (
                "mutation($id: ID!, $s: EventStatus!) { moderateEvent(id: $id, status: $s)"
                " { event { id } } }"
            )
            variables = {"id": event_gid(event_id), "s": status}
            who = STAFF
        elif kind == "join":
            owner = self.world.owners[seq % len(self.world.owners)]
            business = self.world.owner_business[owner]
            event_id = self._take(
                [e for e in self.joinable if (e, business) not in self.world.joined]
            )
            self.joinable.remove(event_id)
            self.world.joined.add((event_id, business))
            self.joins.append((owner, event_id, business))
            before = states[event_id]
            after = replace(before, businesses=before.businesses + 1)
            query = (
                "mutation($e: ID!, $b: ID!) { joinEvent(eventId: $e, businessId: $b) { changed } }"
            )
            variables = {"e": event_gid(event_id), "b": _business_gid(business)}
            who = f"user:{owner}"
        else:  # leave the oldest join still standing
            owner, event_id, business = self.joins.pop(0)
            self.world.joined.discard((event_id, business))
            before = states[event_id]
            after = replace(before, businesses=before.businesses + 1)
            query = (
                "mutation($e: ID!, $b: ID!) { leaveEvent(eventId: $e, businessId: $b) { changed } }"
            )
            variables = {"e": event_gid(event_id), "b": _business_gid(business)}
            who = f"user:{owner}"
        states[event_id] = after
        self.recent = [*self.recent[-9:], event_id]
        return Write(seq, kind, event_id, before, after), query, variables, who

    def _take(self, pool: list[int]) -> int:
        """The first event of `pool` not touched lately: taken out of the moderation
        pools (each is moderated once), sent to the back of the others."""
        for index, event_id in enumerate(pool):
            if event_id not in self.recent:
                if pool is self.rejectable or pool is self.approvable:
                    return pool.pop(index)
                pool.append(pool.pop(index))
                return event_id
        raise RuntimeError("the data set has run out of events for these writes")


def _business_gid(business_id: int) -> str:
    return base64.urlsafe_b64encode(f"Business:{business_id}".encode()).decode().rstrip("=")


async def restore(
    url: str, original: dict[int, State], joined_before: set[tuple[int, int]]
) -> None:
    """Undo every write: the events' fields and status, and the participations."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.executemany(
                "UPDATE event SET title = $2, latitude = $3, longitude = $4, status = $5"
                " WHERE id = $1",
                [
                    (event_id, s.title, s.latitude, s.longitude, s.status)
                    for event_id, s in original.items()
                ],
            )
            rows = await conn.fetch("SELECT event_id, business_id FROM participation")
            extra = [
                (row["event_id"], row["business_id"])
                for row in rows
                if (row["event_id"], row["business_id"]) not in joined_before
            ]
            await conn.executemany(
                "DELETE FROM participation WHERE event_id = $1 AND business_id = $2", extra
            )
    finally:
        await conn.close()


def server_processes(server: Server) -> list[psutil.Process]:
    assert server.process is not None
    main = psutil.Process(server.process.pid)
    return [main, *main.children(recursive=True)]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def rss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


async def metric(http: httpx.AsyncClient, server: Server, name: str) -> float:
    text = (await http.get(f"{server.url}/metrics", timeout=30)).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < needed:
        log(f"live: RLIMIT_NOFILE is {soft}, under the {needed} sockets this run opens")


async def drive(args: argparse.Namespace) -> int:
    rng = random.Random(20261207)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    raise_file_limit(args.subscribers + 1000)
    url = await dataset.prepare_database(dataset.server_admin_url(), dataset.generate(), log=log)
    world = await load_world(url)
    original = dict(world.states)
    joined_before = set(world.joined)
    subscribers = plan_subscribers(args.subscribers, world.owners, rng)
    tokens = {STAFF: mint_token("live-staff@bench.example", ("staff",))}
    for owner in world.owners:
        tokens[f"user:{owner}"] = mint_token(dataset.user_email(owner))
    log(f"live: owners {world.owners}; {len(subscribers)} subscribers planned")

    port = free_port()
    server = Server(
        "live",
        port,
        [str(VENV_BIN / "popmap-gql"), "serve", "--workers", "2", "--port", str(port)],
        {
            **clean_environment(),
            "DATABASE_URL": url,
            "POPMAP_DATA_DIR": str(dataset.APP_DATA_DIR),
            "POPMAP_GRAPHIQL": "false",
            "POPMAP_METRICS": "true",
            "POPMAP_BUDGETS": "false",
            "POPMAP_WS_MAX_CONNECTIONS": str(args.subscribers + 100),
            "LOG_LEVEL": "warning",
        },
        RUN_DIR / "live.log",
    )
    clients: list[subprocess.Popen[str]] = []
    writes: list[Write] = []
    try:
        server.start()
        async with httpx.AsyncClient(timeout=30) as http:
            await wait_ready(http, server)
            await asyncio.sleep(2)  # both workers up
            processes = server_processes(server)
            rss_idle = rss_bytes(processes)
            ws_url = f"ws://127.0.0.1:{port}/graphql"
            shards = [subscribers[k :: args.clients] for k in range(args.clients)]
            started = time.monotonic()
            for k, shard in enumerate(shards):
                spec = RUN_DIR / f"live-client-{k}.json"
                spec.write_text(
                    json.dumps(
                        {
                            "url": ws_url,
                            "out": str(RUN_DIR / f"live-client-{k}.out.json"),
                            "subscribers": [
                                {
                                    "i": s.index,
                                    "token": tokens.get(s.viewer),
                                    "variables": s.box.variables(),
                                }
                                for s in shard
                            ],
                        }
                    )
                )
                clients.append(
                    subprocess.Popen(  # noqa: ASYNC220 - before any measurement
                        [sys.executable, __file__, "--client", str(spec)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        cwd=ROOT,
                    )
                )
            ready = 0
            for client in clients:
                assert client.stdout is not None
                line = await asyncio.to_thread(client.stdout.readline)
                report = json.loads(line)
                ready += report["ready"]
                if report["failures"]:
                    log(f"live: {report['failures']} subscribers failed, e.g. {report['failed']}")
            connect_seconds = time.monotonic() - started
            log(f"live: {ready}/{len(subscribers)} subscribed in {connect_seconds:.1f}s")
            await asyncio.sleep(2)
            processes = server_processes(server)
            rss_full = rss_bytes(processes)
            statements_before = await metric(http, server, "popmap_live_statements_total")
            cohorts = await metric(http, server, "popmap_live_cohorts")
            cpu_before, wall_before = cpu_seconds(processes), time.monotonic()

            writer = Writer(world, rng)
            total = int(args.seconds * args.writes_per_second)
            begin = time.monotonic()
            for seq in range(total):
                await asyncio.sleep(
                    max(0.0, begin + seq / args.writes_per_second - time.monotonic())
                )
                write, query, variables, who = writer.next(seq)
                write.sent = time.monotonic()
                response = await http.post(
                    f"{server.url}/graphql",
                    json={"query": query, "variables": variables},
                    headers={"Authorization": f"Bearer {tokens[who]}"},
                )
                write.answered = time.monotonic()
                body = response.json() if response.status_code == 200 else {}
                write.ok = response.status_code == 200 and "errors" not in body
                if not write.ok:
                    log(f"live: write {seq} {write.kind} failed: {response.text[:300]}")
                    world.states[write.event_id] = write.before
                writes.append(write)
            await asyncio.sleep(DRAIN_SECONDS)
            cpu_after, wall_after = cpu_seconds(processes), time.monotonic()
            statements_after = await metric(http, server, "popmap_live_statements_total")

        received: list[tuple[int, str, str, float]] = []
        closes: dict[str, Any] = {}
        for k, client in enumerate(clients):
            assert client.stdin is not None
            assert client.stdout is not None
            client.stdin.write("stop\n")
            client.stdin.flush()
            await asyncio.to_thread(client.stdout.readline)
            out = json.loads((RUN_DIR / f"live-client-{k}.out.json").read_text())
            received.extend(tuple(item) for item in out["received"])  # type: ignore[misc]
            closes.update(out["closes"])
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
        server.stop()
        await restore(url, original, joined_before)

    done = [write for write in writes if write.ok]
    figures = compare(subscribers, done, received)
    if closes:
        log(f"live: {len(closes)} sockets closed during the run, e.g. {list(closes.items())[:3]}")
    cpu_pct = 100 * (cpu_after - cpu_before) / (wall_after - wall_before)
    rss_per_1000 = (rss_full - rss_idle) / 2**20 / max(1, ready) * 1000
    statements = (statements_after - statements_before) / max(1, len(done))
    log(
        f"live: connect {connect_seconds:.1f}s, server RSS idle {rss_idle / 2**20:.0f} MB,"
        f" subscribed {rss_full / 2**20:.0f} MB; writes by kind"
        f" {dict(sorted(_count(w.kind for w in done).items()))}"
    )
    print(
        f"live subscribers={ready} writes={len(done)}/{len(writes)}"
        f" p50_ms={figures['p50']:.1f} p99_ms={figures['p99']:.1f} max_ms={figures['max']:.1f}"
        f" delivered={figures['delivered']}/expected={figures['expected']}"
        f" wrong={figures['wrong']} extra={figures['extra']} leaked={figures['leaked']}"
        f" cohorts={cohorts:.0f} statements_per_write={statements:.1f} cpu_pct={cpu_pct:.0f}"
        f" rss_mb_per_1000={rss_per_1000:.1f}",
        flush=True,
    )
    ok = figures["delivered"] == figures["expected"] and not (
        figures["wrong"] or figures["extra"] or figures["leaked"]
    )
    return 0 if ok and len(done) == len(writes) and ready == len(subscribers) else 1


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item] += 1
    return dict(counts)


def compare(
    subscribers: list[Subscriber],
    writes: list[Write],
    received: list[tuple[int, str, str, float]],
) -> dict[str, Any]:
    """Expected against received, per (subscriber, event), in order."""
    by_gid = {event_gid(w.event_id): w.event_id for w in writes}
    # Subscribers with the same viewer and box expect the same: compute once per group.
    groups: dict[tuple[str, Box], list[Subscriber]] = defaultdict(list)
    for subscriber in subscribers:
        groups[(subscriber.viewer, subscriber.box)].append(subscriber)
    expected: dict[tuple[int, int], list[tuple[str, Write]]] = defaultdict(list)
    ever_visible: set[tuple[str, int]] = set()
    for write in writes:
        for viewer in {s.viewer for s in subscribers}:
            if may_see(viewer, write.before) or may_see(viewer, write.after):
                ever_visible.add((viewer, write.event_id))
        for members in groups.values():
            change = expected_change(members[0], write.before, write.after)
            if change is not None:
                for member in members:
                    expected[(member.index, write.event_id)].append((change, write))
    got: dict[tuple[int, int], list[tuple[str, float]]] = defaultdict(list)
    extra = leaked = 0
    viewer_of = {s.index: s.viewer for s in subscribers}
    for index, gid, change, at in received:
        event_id = by_gid.get(gid)
        if event_id is None:
            extra += 1
            continue
        got[(index, event_id)].append((change, at))
    latencies: list[float] = []
    delivered = wrong = 0
    for key, messages in got.items():
        messages.sort(key=lambda item: item[1])
        wanted = expected.get(key, [])
        for position, (change, at) in enumerate(messages):
            if position >= len(wanted):
                if (viewer_of[key[0]], key[1]) not in ever_visible:
                    leaked += 1
                else:
                    extra += 1
                continue
            kind, write = wanted[position]
            if kind != change:
                wrong += 1
                continue
            delivered += 1
            latencies.append((at - write.answered) * 1000)
    total = sum(len(items) for items in expected.values())
    return {
        "expected": total,
        "delivered": delivered,
        "wrong": wrong,
        "extra": extra,
        "leaked": leaked,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies) if latencies else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--subscribers", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--writes-per-second", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--client", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client is not None:
        asyncio.run(client_main(args.client))
        return 0
    return asyncio.run(drive(args))


if __name__ == "__main__":
    sys.exit(main())
