"""The part of Cognito's user-pool API that Amplify v6 calls after a hosted-UI sign-in.

`POST /` with `X-Amz-Target: AWSCognitoIdentityProviderService.<Operation>` and a JSON
body (`application/x-amz-json-1.1`), unsigned, as Amplify (and boto3, given this server
as `endpoint_url`) sends it to `authConfig.userPoolEndpoint`: GetTokensFromRefreshToken
(aws-amplify 6.15.4 and later), InitiateAuth with REFRESH_TOKEN_AUTH (earlier versions),
GetUser, RevokeToken and GlobalSignOut. Errors are AWS JSON-protocol errors: HTTP 400,
`{"__type": "NotAuthorizedException", "message": ...}` and the `x-amzn-ErrorType` header.
Mounted only while no user pool is configured, like the hosted UI.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from popmap_gql.auth.hosted_ui import ADMIN_SCOPE, AccessRefused, LocalSignIn
from popmap_gql.auth.local_idp import LOCAL_CLIENT_ID
from popmap_gql.auth.local_sessions import (
    TOKEN_SECONDS,
    mint_tokens,
    revoke_everywhere,
    revoke_session,
    session_of_refresh_token,
)

__all__ = ["AMPLIFY_EXPOSED_HEADERS", "AMPLIFY_REQUEST_HEADERS", "user_pool_api_routes"]

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "AWSCognitoIdentityProviderService."
MAX_BODY_BYTES = 64 * 1024
# What Amplify's user-pool client sends besides content-type (CORS must allow them):
# the operation, its user agent, the SDK's retry bookkeeping and cache-control.
AMPLIFY_REQUEST_HEADERS = (
    "x-amz-target",
    "x-amz-user-agent",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
    "cache-control",
)
AMPLIFY_EXPOSED_HEADERS = ("x-amzn-errortype", "x-amzn-requestid")


@dataclass
class ServiceError(Exception):
    kind: str
    message: str


def _answer(body: dict[str, Any], request_id: str, status: int = 200) -> Response:
    headers = {"x-amzn-RequestId": request_id, "Cache-Control": "no-store"}
    if status != 200:
        headers["x-amzn-ErrorType"] = f"{body['__type']}:"
    return Response(
        json.dumps(body, separators=(",", ":")),
        status,
        headers=headers,
        media_type=CONTENT_TYPE,
    )


def _string(body: dict[str, Any], name: str, *, within: str | None = None) -> str:
    value = body.get(name)
    where = f"{within}.{name}" if within else name
    if not isinstance(value, str) or not value:
        raise ServiceError(
            "InvalidParameterException", f"1 validation error detected: {where} is required"
        )
    if len(value) > 16 * 1024:
        raise ServiceError("InvalidParameterException", f"{where} is too long")
    try:
        value.encode()  # JSON may escape a lone surrogate (\ud800), which has no UTF-8
    except UnicodeEncodeError:
        raise ServiceError("InvalidParameterException", f"{where} is not Unicode text") from None
    return value


def _check_client(body: dict[str, Any]) -> None:
    client = _string(body, "ClientId")
    if client != LOCAL_CLIENT_ID:
        raise ServiceError(
            "ResourceNotFoundException", f"User pool client {client} does not exist."
        )
    if body.get("ClientSecret"):
        raise ServiceError("NotAuthorizedException", f"Client {client} has no secret.")


def _authentication_result(tokens: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "AccessToken": tokens["access_token"],
        "ExpiresIn": TOKEN_SECONDS,
        "TokenType": "Bearer",
    }
    if "id_token" in tokens:
        result["IdToken"] = tokens["id_token"]
    return result


async def _refreshed(local: LocalSignIn, refresh_token: str) -> dict[str, Any]:
    session = await session_of_refresh_token(refresh_token)
    if session is None or session.expired:
        raise ServiceError("NotAuthorizedException", "Invalid Refresh Token")
    if session.revoked:
        raise ServiceError("NotAuthorizedException", "Refresh Token has been revoked")
    return _authentication_result(mint_tokens(local.idp, session))


async def get_tokens_from_refresh_token(local: LocalSignIn, body: dict[str, Any]) -> dict[str, Any]:
    _check_client(body)
    # No refresh-token rotation (Cognito's default): the same refresh token stays valid.
    return {"AuthenticationResult": await _refreshed(local, _string(body, "RefreshToken"))}


async def initiate_auth(local: LocalSignIn, body: dict[str, Any]) -> dict[str, Any]:
    flow = _string(body, "AuthFlow")
    _check_client(body)
    if flow not in {"REFRESH_TOKEN_AUTH", "REFRESH_TOKEN"}:
        raise ServiceError(
            "InvalidParameterException",
            f"{flow} flow not enabled for this client: the local provider signs in through"
            " the hosted UI (signInWithRedirect) and refreshes with REFRESH_TOKEN_AUTH",
        )
    parameters = body.get("AuthParameters")
    if not isinstance(parameters, dict):
        raise ServiceError("InvalidParameterException", "AuthParameters is required")
    refresh_token = _string(parameters, "REFRESH_TOKEN", within="AuthParameters")
    return {
        "ChallengeParameters": {},
        "AuthenticationResult": await _refreshed(local, refresh_token),
    }


async def _access(local: LocalSignIn, body: dict[str, Any]) -> Any:
    try:
        return await local.access(_string(body, "AccessToken"), scope=ADMIN_SCOPE)
    except AccessRefused as refused:
        raise ServiceError("NotAuthorizedException", refused.message) from refused


async def get_user(local: LocalSignIn, body: dict[str, Any]) -> dict[str, Any]:
    claims, session = await _access(local, body)
    attributes = local.attributes(claims, session)
    return {
        "Username": claims.username,
        "UserAttributes": [{"Name": name, "Value": value} for name, value in attributes.items()],
    }


async def global_sign_out(local: LocalSignIn, body: dict[str, Any]) -> dict[str, Any]:
    claims, _session = await _access(local, body)
    await revoke_everywhere(claims.sub)
    return {}


async def revoke_token(local: LocalSignIn, body: dict[str, Any]) -> dict[str, Any]:
    refresh_token = _string(body, "Token")
    client = _string(body, "ClientId")
    if client != LOCAL_CLIENT_ID or body.get("ClientSecret"):
        raise ServiceError("UnauthorizedException", "Invalid client")
    session = await session_of_refresh_token(refresh_token)
    if session is None:
        raise ServiceError("UnsupportedTokenTypeException", "Invalid refresh token")
    await revoke_session(session.origin_jti)
    return {}


Operation = Callable[[LocalSignIn, dict[str, Any]], Awaitable[dict[str, Any]]]
OPERATIONS: dict[str, Operation] = {
    "GetTokensFromRefreshToken": get_tokens_from_refresh_token,
    "InitiateAuth": initiate_auth,
    "GetUser": get_user,
    "GlobalSignOut": global_sign_out,
    "RevokeToken": revoke_token,
}


async def user_pool_api(request: Request) -> Response:
    local: LocalSignIn = request.app.state.local_sign_in
    request_id = str(uuid.uuid4())
    try:
        target = request.headers.get("x-amz-target", "")
        operation = OPERATIONS.get(target.removeprefix(TARGET_PREFIX))
        if not target.startswith(TARGET_PREFIX) or operation is None:
            raise ServiceError("UnknownOperationException", f"unknown operation {target[:100]!r}")
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in {CONTENT_TYPE, "application/x-amz-json-1.0"}:
            raise ServiceError("SerializationException", f"Content-Type must be {CONTENT_TYPE}")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise ServiceError("SerializationException", "the body is too large")
        try:
            body = json.loads(raw or b"{}")
        except (UnicodeDecodeError, ValueError, RecursionError):  # nested too deeply to parse
            raise ServiceError("SerializationException", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ServiceError("SerializationException", "the body must be a JSON object")
        return _answer(await operation(local, body), request_id)
    except ServiceError as refused:
        return _answer({"__type": refused.kind, "message": refused.message}, request_id, 400)


def user_pool_api_routes() -> list[Route]:
    return [Route("/", user_pool_api, methods=["POST"])]
