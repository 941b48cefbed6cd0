"""The GraphQL HTTP endpoint (GraphQL over HTTP: GET for queries, POST with JSON).

Our own, small, instead of Strawberry's view: on a lookup that view's per-request
machinery (request adapters, a sub-response, hooks for uploads, batching and streaming
we do not offer) cost more than executing the operation. It keeps that view's contract:
the same messages for malformed requests, GET limited to queries (405 for a mutation),
GraphiQL for browsers when enabled. Documents may be named by hash (persisted.py). Request
errors (the request is refused before execution) follow GraphQL over HTTP: a 4xx or 5xx
status and a body with `errors` and no `data` entry.

A GET answer says how caches on the way may keep it: one that anyone could have got
(an anonymous request, an answer the response cache shares, no errors) for
POPMAP_HTTP_CACHE_MAX_AGE_SECONDS when set, any other never (`no-store`).
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from popmap_gql.api.admission import Admission
from popmap_gql.api.context import Context
from popmap_gql.api.engine import (
    CannotGetOperationTypeError,
    InvalidOperationTypeError,
    graphiql_html,
)
from popmap_gql.api.errors import RETRY_AFTER_SECONDS, fault_log, format_error, service_fault
from popmap_gql.api.schema import PopmapSchema
from popmap_gql.auth.authenticator import Authenticator
from popmap_gql.auth.viewer import Viewer
from popmap_gql.config import Settings
from popmap_gql.errors import InvalidToken, ServiceUnavailable
from popmap_gql.http.budgets import (
    REFUSED_COST,
    Account,
    Outcome,
    Subject,
    build_budgets,
    charged_cost,
)
from popmap_gql.http.cache import CachedResponses, Lookup
from popmap_gql.http.known_bodies import MAX_BODY_BYTES, Remembered, known_bodies
from popmap_gql.http.media_types import check_json_request
from popmap_gql.http.nesting import MAX_JSON_DEPTH, nests_deeper_than
from popmap_gql.http.observe import (
    describe_operation,
    note_cache,
    note_error_codes,
    note_operation,
    note_viewer,
)
from popmap_gql.http.persisted import Document, PersistedDocuments
from popmap_gql.http.request_errors import BadRequest
from popmap_gql.media.stores import public_base
from popmap_gql.memory import DocumentMemory

__all__ = ["GRAPHQL_RESPONSE_JSON", "GraphQLView", "error_response", "negotiate_media_type"]

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"

_GET_OPERATIONS = frozenset({OperationType.QUERY})
# query, variables and operationName of a request whose document is resolved
_Operation = tuple[str, dict[str, Any] | None, str | None]
# Subscriptions are served over WebSocket on the same path (popmap_gql/live/ws.py).
_POST_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})
# RFC 9110 section 15.5.6: a 405 lists the methods the resource supports.
ALLOWED_METHODS = "GET, POST"


# Accept values whose negotiated media type is remembered: clients send a handful of
# short ones, and a longer value is negotiated each time.
_REMEMBERED_ACCEPT_LENGTH = 256


def negotiate_media_type(accept: str) -> str:
    """application/graphql-response+json when the client prefers it, else application/json."""
    if len(accept) <= _REMEMBERED_ACCEPT_LENGTH:
        return _remembered_negotiation(accept)
    return _negotiate(accept)


def _negotiate(accept: str) -> str:
    best, best_q = "application/json", -1.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        if media not in {GRAPHQL_RESPONSE_JSON, "application/json"}:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0:  # "not acceptable" (RFC 9110 section 12.4.2); a malformed q counts so
            continue
        if q > best_q or (q == best_q and media == GRAPHQL_RESPONSE_JSON):
            best, best_q = media, q
    return best


_remembered_negotiation = functools.lru_cache(maxsize=64)(_negotiate)


def _content_type(media_type: str) -> str:
    """What every answer's Content-Type says: a cache hit and an error as much as a miss."""
    return f"{media_type}; charset=utf-8"


def error_response(
    request_accept: str,
    status_code: int,
    message: str,
    code: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """A GraphQL-shaped error body, in the media type the client asked for."""
    note_error_codes((code,))
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status_code,
        headers=headers,
        media_type=_content_type(negotiate_media_type(request_accept)),
    )


def _json(text: str | bytes, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadRequest(f"Unable to parse {what} as JSON") from None


def _query_params(request: Request) -> dict[str, Any]:
    """A GET request's GraphQL parameters, from its query string."""
    params: dict[str, Any] = dict(request.query_params)
    for name in ("variables", "extensions"):
        if params.get(name):
            params[name] = _json(params[name], f"the {name} parameter")
        else:
            params.pop(name, None)
    return params


async def _post_body(request: Request) -> bytes:
    """A POST request's body, once its Content-Type says it is JSON we execute."""
    check_json_request(request.headers.get("content-type"))
    return await request.body()


def _body_params(body: bytes) -> dict[str, Any]:
    """A POST request's GraphQL parameters, from its JSON body."""
    params = _json(body, "request body")
    if isinstance(params, list):
        raise BadRequest("Batching is not enabled")
    if not isinstance(params, dict):
        raise BadRequest("The request body must be a JSON object")
    return params


def _operation(params: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """query, variables and operationName, each of the type GraphQL over HTTP requires."""
    query, variables = params.get("query"), params.get("variables")
    operation_name, extensions = params.get("operationName"), params.get("extensions")
    for name, value, kind, what in (
        ("query", query, str, "a string or null"),
        ("variables", variables, dict, "an object or null"),
        ("operationName", operation_name, str, "a string"),
        ("extensions", extensions, dict, "an object or null"),
    ):
        if not isinstance(value, kind | None):
            raise BadRequest(f"The GraphQL operation's `{name}` must be {what}, if provided.")
    for name, value in (("variables", variables), ("extensions", extensions)):
        if nests_deeper_than(value, MAX_JSON_DEPTH):
            raise BadRequest(
                f"The GraphQL operation's `{name}` are nested more than {MAX_JSON_DEPTH} levels"
                " deep."
            )
    return query, variables, operation_name


_HIT = {"x-popmap-cache": "hit"}
# A GET answer that caches on the way must not keep (see the module docstring).
_NOT_STORED = "no-store"

# A request's operation: (name, type), as `describe_operation` tells it.
_NO_OPERATION: tuple[str | None, str | None] = (None, None)


@functools.lru_cache(maxsize=64)
def _base_url(
    scheme: str,
    server: tuple[str, int | None] | None,
    host: str | None,
    root_path: str,
) -> str:
    """Starlette's `request.base_url` for a request with these, and only these, parts.

    Building it costs more than the rest of a cache hit's checks together, and it takes
    its value from nothing else (a request scope made of these parts alone computes
    it; `app_root_path`, which only a Mount sets, is never in the view's scope: the app
    mounts nothing), so it is remembered for the few combinations real requests have.
    """
    scope: dict[str, Any] = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "path": "/",
        "query_string": b"",
        "root_path": root_path,
        "headers": [] if host is None else [(b"host", host.encode("latin-1"))],
    }
    return str(Request(scope).base_url)


def _is_request_error(result: ExecutionResult) -> bool:
    """Parsing, validation, a limit or the variables refused the request: errors raised
    while executing a field carry its path, request errors never do."""
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


class GraphQLView:
    def __init__(self, schema: PopmapSchema, settings: Settings) -> None:
        self.schema = schema
        self.settings = settings
        self.cached = (
            CachedResponses(
                schema.documents.prepare,
                private=schema.private_fields,
                ttl=settings.response_cache_ttl_seconds,
                max_bytes=settings.response_cache_max_bytes,
                max_entry_bytes=settings.response_cache_max_entry_bytes,
            )
            if settings.response_cache
            else None
        )
        memory = DocumentMemory(settings.document_memory_bytes)
        self.known = known_bodies(memory.known_bodies)
        self.budgets = build_budgets(settings)
        self.persisted = PersistedDocuments(
            prepare=schema.documents.prepare,
            trusted=settings.trusted_documents,
            max_documents=settings.apq_max_documents,
            max_bytes=settings.apq_max_bytes,
            local_max_bytes=memory.persisted,
        )
        self.shared_get_caching = (
            {
                "Cache-Control": f"public, max-age={settings.http_cache_max_age_seconds}",
                # the media type answered, and anonymous only: a request with a token
                # never gets a stored copy of this answer
                "Vary": "Accept, Authorization",
            }
            if settings.http_cache_max_age_seconds > 0
            else {}
        )
        # Media URLs then start with the origin the request came through (see Context),
        # as does the local identity provider's authConfig (domain, userPoolEndpoint).
        self.answers_embed_origin = public_base(settings) is None or not settings.cognito_configured
        self.ide_html = graphiql_html() if settings.graphiql_enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # An HTTP route's: WebSockets on the same path go to live/ws.py.
        request = Request(scope, receive)
        accept = request.headers.get("accept", "")
        account = Account()
        try:
            response: Response = await self._respond(request, accept, account)
        except InvalidToken as exc:
            # 401 tells the client to refresh its token and retry (RFC 6750 section 3).
            challenge = f'Bearer error="invalid_token", error_description="{exc.message}"'
            response = error_response(
                accept, 401, exc.message, exc.code, headers={"WWW-Authenticate": challenge}
            )
        except ServiceUnavailable as exc:
            fault_log.report(exc)
            response = error_response(
                accept,
                503,
                exc.message,
                exc.code,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        except BadRequest as exc:
            response = error_response(accept, exc.status, exc.message, exc.code, exc.headers)
        if self.budgets is not None:
            response = await self._account_for(request, accept, account, response)
        if request.method == "GET" and "cache-control" not in response.headers:
            response.headers["Cache-Control"] = _NOT_STORED
        await response(scope, receive, send)

    async def _account_for(
        self, request: Request, accept: str, account: Account, response: Response
    ) -> Response:
        """The answer with its budget's header fields; a request answered before it was
        charged (refused while being read, or authenticated) pays REFUSED_COST now."""
        assert self.budgets is not None
        if account.headers is None:
            subject = account.subject or self.budgets.subject(None, request.scope)
            outcome = await self.budgets.charge(subject, REFUSED_COST)
            if outcome.allowed:
                account.headers = outcome.headers(subject.policy)
            else:
                response = self._over_budget(accept, subject, outcome, account)
        assert account.headers is not None
        # appended as they are: nothing else sets these fields (MutableHeaders would scan)
        response.raw_headers.extend(account.headers)
        return response

    def _over_budget(
        self, accept: str, subject: Subject, outcome: Outcome, account: Account
    ) -> Response:
        """429 RATE_LIMITED: nothing of the request is done (see budgets.py)."""
        assert self.budgets is not None
        account.headers = outcome.headers(subject.policy)
        return error_response(
            accept, 429, self.budgets.refusal_message(subject, outcome), "RATE_LIMITED"
        )

    async def _respond(self, request: Request, accept: str, account: Account) -> Response:
        if request.method not in {"GET", "POST"}:  # the route sends every method here
            raise BadRequest(
                "GraphQL only supports GET and POST requests.",
                status=405,
                code="METHOD_NOT_ALLOWED",
                headers={"Allow": ALLOWED_METHODS},
            )
        if self._wants_ide(request, accept):
            if self.ide_html is None:
                raise BadRequest("Not Found", status=404, code="NOT_FOUND")
            return HTMLResponse(self.ide_html)
        authenticator: Authenticator = request.app.state.authenticator
        viewer = await authenticator.authenticate(request.headers.get("authorization"))
        note_viewer(viewer)
        if self.budgets is not None:
            account.subject = self.budgets.subject(viewer, request.scope)
            refused = self.budgets.still_refused(account.subject)
            if refused is not None:  # known to be over budget: not even read
                return self._over_budget(accept, account.subject, refused, account)
        media_type = negotiate_media_type(accept)
        body = await _post_body(request) if request.method == "POST" else None
        # A body already admitted goes to the cache without being read again (see
        # known_bodies.py); it is parsed afresh only if it must be executed.
        known = await self._known(body) if body is not None else None
        key, described = (known.key, known.described) if known else (None, _NO_OPERATION)
        cost = known.cost if known else REFUSED_COST
        operation: _Operation | None = None
        if key is None:
            operation, document = await self._parse(request, body)
            query, variables, operation_name = operation
            described = describe_operation(self.schema.documents.prepare(query), operation_name)
            admission = self._admission(query, operation_name, variables)
            cost = charged_cost(admission)
            key = self._cache_key(query, admission)
            if (
                key is not None
                and body is not None
                and len(body) <= MAX_BODY_BYTES  # a larger one is checked each time
                and not document.registers
            ):
                self.known.put(body, Remembered(key, described, document.stored_hash, cost))
        note_operation(described)
        if self.budgets is not None:  # charged before any lookup or execution
            subject = account.subject
            assert subject is not None
            outcome = await self.budgets.charge(subject, cost)
            if not outcome.allowed:
                return self._over_budget(accept, subject, outcome, account)
            account.headers = outcome.headers(subject.policy)

        headers: dict[str, str] = {}
        found = Lookup(None)
        if key is not None:
            assert self.cached is not None
            found = await self.cached.lookup(viewer, key, self._origin(request))
            # Whoever else asks the same gets the same answer: a cache on the way may keep it.
            shared = request.method == "GET" and not viewer.is_authenticated
            if found.body is not None:
                note_cache("hit")
                hit = {**_HIT, **self.shared_get_caching} if shared else _HIT
                return Response(found.body, media_type=_content_type(media_type), headers=hit)
            if found.slot is not None:
                note_cache("miss")
                headers["x-popmap-cache"] = "miss"
                if shared:
                    headers.update(self.shared_get_caching)
        try:  # from here on, whatever happens must end the lookup's computation (land)
            if operation is None:  # a known body: its own variables, its document resolved
                operation, _ = await self._parse(request, body)
            query, variables, operation_name = operation
            result = await self._execute(request, query, variables, operation_name, viewer)
            fault = service_fault(result.errors)
            if fault is not None:
                raise fault
            if self.cached and found.slot is not None and result.data and not result.errors:
                await self.cached.put(found.slot, result.data)
        finally:
            if self.cached is not None:
                self.cached.land(found)  # requests waiting for this answer: not to be had
        if result.errors:  # shared only as the cache shares: answers without errors
            headers.pop("Cache-Control", None)
            headers.pop("Vary", None)
        return self._result_response(result, media_type, headers)

    async def _known(self, body: bytes) -> Remembered | None:
        """What is remembered of this body, if it still holds (see known_bodies.py)."""
        known = self.known.get(body)
        if (
            known is not None
            and known.stored_hash is not None
            and not await self.persisted.still_stored(known.stored_hash)
        ):
            self.known.pop(body)
            return None
        return known

    async def _parse(self, request: Request, body: bytes | None) -> tuple[_Operation, Document]:
        """The request's operation, its document resolved (persisted.py), or a refusal."""
        params = _query_params(request) if body is None else _body_params(body)
        query, variables, operation_name = _operation(params)
        document = await self.persisted.document(params, query)
        if document is None or not document.text:
            raise BadRequest("No GraphQL query found in the request")
        return (document.text, variables, operation_name), document

    def _admission(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None
    ) -> Admission | None:
        """The request's admission (None: refused), when the cache or the budgets need it."""
        if self.cached is None and self.budgets is None:
            return None
        return self.schema.admits(query, operation_name, variables)

    def _cache_key(self, query: str, admission: Admission | None) -> bytes | None:
        """The request's key in the response cache; None when the cache is not consulted:
        there is none, the request is refused (invalid or too costly: it runs no SQL, not
        even the cache's) or its answer is never cached."""
        if self.cached is None or admission is None:
            return None
        return self.cached.request_key(query, admission.operation_name, admission.key)

    def _origin(self, request: Request) -> str:
        """What separates answers embedding the URL the request came through (see
        `CachedResponses.slot`): its base URL, when answers embed it."""
        if not self.answers_embed_origin:
            return ""
        scope = request.scope
        server = scope.get("server")
        return _base_url(
            scope.get("scheme", "http"),
            None if server is None else tuple(server),
            request.headers.get("host"),
            scope.get("root_path", ""),
        )

    async def _execute(
        self,
        request: Request,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        viewer: Viewer,
    ) -> ExecutionResult:
        is_get = request.method == "GET"
        context = Context(
            request=request,
            settings=self.settings,
            loader_setup=self.schema.loader_setup,
            viewer=viewer,
        )
        try:
            return await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=_GET_OPERATIONS if is_get else _POST_OPERATIONS,
            )
        except CannotGetOperationTypeError as exc:
            raise BadRequest(exc.as_http_error_reason()) from None
        except InvalidOperationTypeError as exc:
            # GraphQL over HTTP: an operation the method may not carry is 405, not 400.
            # Allow names the method this operation may use, as graphql-http does.
            raise BadRequest(
                exc.as_http_error_reason(request.method),
                status=405,
                code="METHOD_NOT_ALLOWED",
                headers={"Allow": "POST"},
            ) from None

    @staticmethod
    def _result_response(
        result: ExecutionResult, media_type: str, headers: dict[str, str]
    ) -> Response:
        status = 200
        payload: dict[str, Any] = {}
        if _is_request_error(result):
            # Nothing was executed: GraphQL says no `data` entry, and GraphQL over HTTP a
            # 4xx for its own media type (application/json keeps 200 for older clients).
            status = 400 if media_type == GRAPHQL_RESPONSE_JSON else 200
        else:
            payload["data"] = result.data
        if result.errors:
            payload["errors"] = [format_error(error) for error in result.errors]
            note_error_codes(error["extensions"]["code"] for error in payload["errors"])
        return Response(
            orjson.dumps(payload),
            status_code=status,
            headers=headers,
            media_type=_content_type(media_type),
        )

    @staticmethod
    def _wants_ide(request: Request, accept: str) -> bool:
        """A browser opening the endpoint; a hash-only persisted-query GET never is."""
        if request.method != "GET":
            return False
        params = request.query_params
        return (
            "query" not in params
            and "extensions" not in params
            and "documentId" not in params
            and ("text/html" in accept or "*/*" in accept)
        )
