"""The GraphQL HTTP endpoint: Strawberry's ASGI view with our context, errors and media types."""

from __future__ import annotations

from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult

from popmap_gql.api.cache import CachedResponses, Slot
from popmap_gql.api.context import Context
from popmap_gql.api.errors import format_error
from popmap_gql.api.schema import PopmapSchema
from popmap_gql.auth.authenticator import Authenticator
from popmap_gql.auth.viewer import Viewer
from popmap_gql.config import Settings
from popmap_gql.errors import InvalidToken, ServiceUnavailable

__all__ = ["GRAPHQL_RESPONSE_JSON", "GraphQLView", "error_response", "negotiate_media_type"]

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"

_HTTP_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
_UNKNOWN = object()


async def _request_params(request: Request) -> dict[str, Any]:
    """query, variables and operationName as sent; {} when they cannot be read cheaply."""
    if request.method == "GET":
        params: dict[str, Any] = dict(request.query_params)
        raw_variables = params.get("variables")
        if raw_variables is not None:
            try:
                params["variables"] = orjson.loads(raw_variables)
            except orjson.JSONDecodeError:
                return {}
        return params
    if "application/json" not in request.headers.get("content-type", ""):
        return {}
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def negotiate_media_type(accept: str) -> str:
    """application/graphql-response+json when the client prefers it, else application/json."""
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
        if q > best_q or (q == best_q and media == GRAPHQL_RESPONSE_JSON):
            best, best_q = media, q
    return best


def error_response(
    request_accept: str,
    status_code: int,
    message: str,
    code: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """A GraphQL-shaped error body, in the media type the client asked for."""
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status_code,
        headers=headers,
        media_type=negotiate_media_type(request_accept),
    )


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, schema: PopmapSchema, settings: Settings) -> None:
        self.cached = (
            CachedResponses(ttl=settings.response_cache_ttl_seconds)
            if settings.response_cache
            else None
        )
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=True,
            keep_alive=False,
            subscription_protocols=(),
        )
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # No subscriptions: refuse websockets rather than leave them half-open.
            response: Response = Response(status_code=404)
            await response(scope, receive, send)
            return
        request = Request(scope, receive)
        accept = request.headers.get("accept", "")
        try:
            viewer = await self.authenticator(request).authenticate(
                request.headers.get("authorization")
            )
            request.state.viewer = viewer
            response = await self._cached_answer(request, viewer, accept) or await self.run(request)
        except InvalidToken as exc:
            # 401 tells the client to refresh its token and retry (RFC 6750 section 3).
            challenge = f'Bearer error="invalid_token", error_description="{exc.message}"'
            response = error_response(
                accept, 401, exc.message, exc.code, headers={"WWW-Authenticate": challenge}
            )
        except ServiceUnavailable as exc:
            response = error_response(
                accept, 503, exc.message, exc.code, headers={"Retry-After": "5"}
            )
        except HTTPException as exc:
            code = _HTTP_CODES.get(exc.status_code, "BAD_REQUEST")
            response = error_response(accept, exc.status_code, exc.reason, code)
        await response(scope, receive, send)

    async def _cached_answer(
        self, request: Request, viewer: Viewer, accept: str
    ) -> Response | None:
        """A cache hit answered before Strawberry parses anything; None to execute normally."""
        if self.cached is None or request.method not in {"GET", "POST"}:
            return None
        params = await _request_params(request)
        query = params.get("query")
        if not isinstance(query, str):
            return None
        variables = params.get("variables")
        operation_name = params.get("operationName")
        if not isinstance(variables, dict | None) or not isinstance(operation_name, str | None):
            return None
        slot = await self.cached.slot(viewer, query, operation_name, variables)
        request.state.cache_slot = slot
        body = None if slot is None else self.cached.get(slot)
        if body is None:
            return None
        return Response(
            body,
            media_type=negotiate_media_type(accept),
            headers={"x-popmap-cache": "hit"},
        )

    @staticmethod
    def authenticator(request: Request) -> Authenticator:
        authenticator: Authenticator = request.app.state.authenticator
        return authenticator

    async def get_context(self, request: Request, response: Response) -> Context:  # type: ignore[override]
        return Context(
            request=request,
            response=response,
            settings=self.settings,
            viewer=request.state.viewer,
        )

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A hash-only persisted-query GET must reach the executor, never the IDE page.
        return (
            super().should_render_graphql_ide(request) and "extensions" not in request.query_params
        )

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        if (
            request_data.query is None
            and isinstance(request_data.extensions, dict)
            and "persistedQuery" in request_data.extensions
        ):
            # Apollo's persisted-query link falls back to sending the full query on
            # exactly this answer; any other error breaks every query of the app.
            return ExecutionResult(
                data=None,
                errors=[
                    GraphQLError(
                        "PersistedQueryNotSupported",
                        extensions={"code": "PERSISTED_QUERY_NOT_SUPPORTED"},
                    )
                ],
            )
        slot = await self._slot(request, context, request_data)
        try:
            result = await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        except HTTPException as exc:
            # GraphQL over HTTP: an operation the method may not carry is 405, not 400.
            if exc.status_code == 400 and "not allowed when using GET" in exc.reason:
                raise HTTPException(405, exc.reason) from exc
            raise
        if self.cached is not None and slot is not None:
            sub_response.headers["x-popmap-cache"] = "miss"
            if not result.errors and result.data is not None:
                self.cached.put(slot, result.data)
        return result

    async def _slot(
        self, request: Request, context: Context, request_data: GraphQLRequestData
    ) -> Slot | None:
        """The request's place in the response cache; None when it is not to be cached."""
        if self.cached is None or request_data.query is None:
            return None
        # _cached_answer already placed the request when it could read it.
        known = getattr(request.state, "cache_slot", _UNKNOWN)
        if known is None or isinstance(known, Slot):
            return known
        return await self.cached.slot(
            context.viewer, request_data.query, request_data.operation_name, request_data.variables
        )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            data["errors"] = [format_error(error) for error in result.errors]
        if result.extensions:
            data["extensions"] = result.extensions
        return data

    async def get_sub_response(self, request: Request) -> Response:  # type: ignore[override]
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = negotiate_media_type(request.headers.get("accept", ""))
        return sub_response

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = sub_response.media_type or "application/json"
        response.headers["content-type"] = f"{media_type}; charset=utf-8"
        return response

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)
