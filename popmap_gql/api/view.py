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

from popmap_gql.api.cache import ResponseCache, analyse
from popmap_gql.api.context import Context
from popmap_gql.api.errors import format_error
from popmap_gql.api.schema import PopmapSchema
from popmap_gql.auth.authenticator import Authenticator
from popmap_gql.auth.viewer import Viewer
from popmap_gql.config import Settings
from popmap_gql.db import queries
from popmap_gql.errors import InvalidToken, ServiceUnavailable

__all__ = ["GRAPHQL_RESPONSE_JSON", "GraphQLView", "error_response", "negotiate_media_type"]

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"

_HTTP_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


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
        self.response_cache = (
            ResponseCache(ttl=settings.response_cache_ttl_seconds)
            if settings.response_cache
            else None
        )
        # (user id, data version) -> whether that user's view differs from the public one
        self._private_views: dict[tuple[int, int], bool] = {}
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
            request.state.viewer = await self.authenticator(request).authenticate(
                request.headers.get("authorization")
            )
            response = await self.run(request)
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
        cache = self.response_cache
        if cache is None or request_data.query is None or not analyse(request_data.query).cacheable:
            return await self._execute(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        version = await queries.data_version()
        scope = await self._scope(context.viewer, version)
        if scope is None:
            return await self._execute(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        key = cache.key(
            scope, request_data.query, request_data.operation_name, request_data.variables
        )
        data = cache.get(key, version)
        if data is not None:
            sub_response.headers["x-popmap-cache"] = "hit"
            return ExecutionResult(data=data, errors=None)
        result = await self._execute(
            request, request_adapter, sub_response, context, root_value, request_data
        )
        if not result.errors and result.data is not None:
            cache.put(key, version, result.data)
        sub_response.headers["x-popmap-cache"] = "miss"
        return result

    async def _scope(self, viewer: Viewer, version: int) -> str | None:
        """Who may share a cached answer with this viewer; None: nobody."""
        if viewer.user_id is None:
            return "public"
        if viewer.is_staff:
            return "staff"
        key = (viewer.user_id, version)
        private = self._private_views.get(key)
        if private is None:
            if len(self._private_views) > 10_000:
                self._private_views.clear()
            private = await queries.sees_more_than_the_public(viewer.user_id)
            self._private_views[key] = private
        return None if private else "public"

    async def _execute(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        try:
            return await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        except HTTPException as exc:
            # GraphQL over HTTP: an operation the method may not carry is 405, not 400.
            if exc.status_code == 400 and "not allowed when using GET" in exc.reason:
                raise HTTPException(405, exc.reason) from exc
            raise

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
