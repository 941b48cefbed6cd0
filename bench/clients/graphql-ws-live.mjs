// The real graphql-ws client, as Apollo Client's GraphQLWsLink uses it (createClient with
// an async connectionParams returning the Authorization), subscribed to eventsChanged on
// `popmap-gql serve --demo`: a staff subscriber and an anonymous one. Changes go over
// HTTP with a staff token; prints each message as it arrives.
//
//   npm install --prefix /tmp/live-check graphql-ws ws graphql
//   cp bench/clients/graphql-ws-live.mjs /tmp/live-check/
//   .venv/bin/popmap-gql serve --demo --port 8765 &
//   STAFF_TOKEN=$(.venv/bin/popmap-gql dev-token --email s@example.com --group staff \
//     | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') \
//     node /tmp/live-check/graphql-ws-live.mjs http://127.0.0.1:8765/graphql
// (dev-token and serve --demo share the data folder: run both from the repository root.)
// (bench/README.md has a run's output.)
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const HTTP = process.argv[2] ?? "http://127.0.0.1:8765/graphql";
const WS = HTTP.replace(/^http/, "ws");
const TOKEN = process.env.STAFF_TOKEN;
if (!TOKEN) throw new Error("STAFF_TOKEN is not set");

const SUBSCRIPTION = `subscription Map($filter: EventFilter) {
  eventsChanged(filter: $filter) { change eventId event { title status } }
}`;

async function http(query, variables) {
  const response = await fetch(HTTP, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

// One subscriber: its own client, as an app has; resolves once the subscription is in place
// (the server handles a socket's messages in order: a pong after the subscribe means so).
function subscriber(name, token) {
  const inbox = [];
  const waiting = [];
  let pong;
  const ponged = new Promise((resolve) => (pong = resolve));
  const client = createClient({
    url: WS,
    webSocketImpl: WebSocket,
    lazy: true,
    keepAlive: 200,
    // as with Amplify: called on every (re)connection, so each starts with a fresh token
    connectionParams: async () => (token ? { Authorization: `Bearer ${token}` } : {}),
    on: { pong: () => pong() },
  });
  client.subscribe(
    { query: SUBSCRIPTION, variables: { filter: { upcoming: false } } },
    {
      next: (message) => {
        const change = message.data.eventsChanged;
        console.log(`${name}: ${change.change} ${change.eventId} ${JSON.stringify(change.event)}`);
        const waiter = waiting.shift();
        if (waiter) waiter(change);
        else inbox.push(change);
      },
      error: (error) => console.log(`${name}: error ${JSON.stringify(error)}`),
      complete: () => console.log(`${name}: complete`),
    },
  );
  const next = () =>
    inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiting.push(r));
  return { client, ready: ponged, next };
}

function expect(who, change, kind, eventId) {
  if (change.change !== kind || change.eventId !== eventId) {
    throw new Error(`${who}: expected ${kind} ${eventId}, got ${JSON.stringify(change)}`);
  }
}

const list = await http("{ events(first: 1, filter: {upcoming: false}) { edges { node { id title } } } }");
const { id, title } = list.events.edges[0].node;
const staff = subscriber("staff", TOKEN);
const anonymous = subscriber("anonymous", null);
await Promise.all([staff.ready, anonymous.ready]);
console.log(`both subscribed; changing ${id} (${title}) over HTTP`);

const update = "mutation($id: ID!, $t: String!) { updateEvent(id: $id, input: {title: $t}) { event { id } } }";
const moderate = "mutation($id: ID!, $s: EventStatus!) { moderateEvent(id: $id, status: $s) { event { id } } }";

await http(update, { id, t: `${title} (live)` });
expect("staff", await staff.next(), "UPDATED", id);
expect("anonymous", await anonymous.next(), "UPDATED", id);

await http(moderate, { id, s: "REJECTED" });
expect("staff", await staff.next(), "UPDATED", id); // staff see every status
expect("anonymous", await anonymous.next(), "REMOVED", id);

await http(moderate, { id, s: "APPROVED" });
expect("staff", await staff.next(), "UPDATED", id);
expect("anonymous", await anonymous.next(), "ADDED", id);

await http(update, { id, t: title });
expect("staff", await staff.next(), "UPDATED", id);
expect("anonymous", await anonymous.next(), "UPDATED", id);

console.log("ok: UPDATED, REMOVED and ADDED arrived through graphql-ws");
await Promise.all([staff.client.dispose(), anonymous.client.dispose()]);
process.exit(0);
