"""The local identity provider's hosted UI: what Amplify's `signInWithRedirect` calls.

Served by `serve` only while no user pool is configured (app.py mounts these routes then,
and never with a pool). It speaks Cognito's hosted-UI endpoints with the authorization
code grant and PKCE (S256, required): `/oauth2/authorize` sends the browser to `/login`, a
development-only page that asks for an email and groups (no password) and returns to the
app's callback with a single-use code, which `/oauth2/token` exchanges for tokens signed
by the local provider's key (the key `serve` trusts). `/logout`, `/oauth2/userInfo`,
`/oauth2/revoke` and the JWKS complete it. Errors are answered as Cognito answers them:
redirected to the app with `error` and `error_description` once the client and redirect
URI are known good, an error page before that, and JSON from the token endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from popmap_gql.auth.authenticator import bearer_token
from popmap_gql.auth.local_idp import (
    LOCAL_CLIENT_ID,
    LocalIdentityProvider,
)
from popmap_gql.auth.local_sessions import (
    FEDERATED_PROVIDERS,
    TOKEN_SECONDS,
    LocalPerson,
    Session,
    create_session,
    find_session,
    issue_code,
    mint_tokens,
    redeem_code,
    revoke_session,
    session_of_refresh_token,
)
from popmap_gql.auth.tokens import TokenClaims, TokenVerifier
from popmap_gql.config import Settings
from popmap_gql.errors import InvalidToken

__all__ = ["AccessRefused", "LocalSignIn", "hosted_ui_routes"]

# The scopes the local app client allows, besides AWS_COGNITO_OAUTH_SCOPES: the OIDC ones
# and Cognito's own, which the user-pool API's GetUser and GlobalSignOut require.
ADMIN_SCOPE = "aws.cognito.signin.user.admin"
STANDARD_SCOPES = ("openid", "email", "profile", "phone", ADMIN_SCOPE)
MAX_PARAM_CHARS = 2048
MAX_FORM_BYTES = 16 * 1024
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256, no padding
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 section 4.1
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_GROUP = re.compile(r"[\w.@+=-]{1,128}")
MAX_GROUPS = 20
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The pages run no script and embed nothing; nobody may frame them (clickjacking). No
# form-action: browsers apply it to the redirect after the form too, which goes to the app.
_PAGE_HEADERS = {
    **_NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
    " frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


@dataclass
class AccessRefused(Exception):
    """An access token the local provider's endpoints refuse. `kind` is one of
    invalid, expired, revoked, scope; the message is Cognito's wording."""

    kind: str
    message: str


class LocalSignIn:
    """What the hosted UI and the user-pool API share: the provider, its verifier."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def idp(self) -> LocalIdentityProvider:
        """Loaded on first use (the same key file the authenticator loads)."""
        return LocalIdentityProvider(self.settings.data_dir)

    @cached_property
    def verifier(self) -> TokenVerifier:
        return self.idp.verifier(self.settings)

    async def access(self, token: str, *, scope: str) -> tuple[TokenClaims, Session | None]:
        """The claims of a person's access token holding `scope`, and its session (None
        for `dev-token`'s tokens, which belong to no sign-in); AccessRefused else."""
        try:
            claims = await self.verifier.verify(token)
        except InvalidToken as exc:
            if exc.message == "token has expired":
                raise AccessRefused("expired", "Access Token has expired") from exc
            raise AccessRefused("invalid", "Invalid Access Token") from exc
        if claims.token_use != "access" or claims.is_service:  # noqa: S105
            raise AccessRefused("invalid", "Invalid Access Token")
        session = None
        origin = claims.raw.get("origin_jti")
        if isinstance(origin, str):
            session = await find_session(origin)
            if session is None or session.revoked:
                raise AccessRefused("revoked", "Access Token has been revoked")
        granted = claims.raw.get("scope")
        if not isinstance(granted, str) or scope not in granted.split():
            raise AccessRefused("scope", "Access Token does not have required scopes")
        return claims, session

    def attributes(self, claims: TokenClaims, session: Session | None) -> dict[str, str]:
        """A person's user attributes, as GetUser and userInfo list them."""
        values = {"sub": claims.sub}
        if session is not None:
            person = session.person
            values["email"] = person.email
            values["email_verified"] = "true"
            if identities := person.identities(session.auth_time):
                values["identities"] = json.dumps(identities, separators=(",", ":"))
        return values


# --- /oauth2/authorize and the sign-in page -------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    redirect_uri: str
    state: str | None
    scopes: tuple[str, ...]
    code_challenge: str
    provider: str | None
    nonce: str | None

    def query(self) -> dict[str, str]:
        """These parameters again, as /oauth2/authorize takes them."""
        values = {
            "client_id": LOCAL_CLIENT_ID,
            "response_type": "code",
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.scopes),
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
        }
        optional = {"state": self.state, "identity_provider": self.provider, "nonce": self.nonce}
        return values | {name: value for name, value in optional.items() if value is not None}


@dataclass
class _PageError(Exception):
    """Refused before the redirect URI is known good: answered with an error page."""

    error: str
    description: str

    def answer(self) -> Response:
        return _error_page(self.error, self.description)


@dataclass
class _RedirectError(Exception):
    """Refused after: the browser goes back to the app with `error` and the state."""

    redirect_uri: str
    state: str | None
    error: str
    description: str

    def answer(self) -> Response:
        values = {"error": self.error, "error_description": self.description}
        return _to_app(self.redirect_uri, self.state, values)


def _single_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise _PageError("invalid_request", f"parameter {name} is repeated")
        if len(value) > MAX_PARAM_CHARS:
            raise _PageError("invalid_request", f"parameter {name} is too long")
        if "\x00" in value:  # PostgreSQL's text and jsonb cannot hold it (a nonce, an email)
            raise _PageError("invalid_request", f"parameter {name} holds a NUL character")
        values[name] = value
    return values


def parse_authorize(params: Mapping[str, str], settings: Settings) -> AuthorizeRequest:
    """Check /oauth2/authorize's parameters as Cognito does, in its order: the client
    and the redirect URI first (refused on a page: the URI cannot be trusted yet), then
    the rest (refused by redirecting there)."""
    client_id = params.get("client_id")
    if client_id != LOCAL_CLIENT_ID:
        raise _PageError("invalid_request", f"client_id must be {LOCAL_CLIENT_ID}")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in settings.cognito_redirect_sign_in:
        raise _PageError(
            "redirect_mismatch",
            "redirect_uri is not one of the callback URLs (AWS_COGNITO_REDIRECT_SIGN_IN)",
        )
    state = params.get("state")

    def refuse(error: str, description: str) -> _RedirectError:
        return _RedirectError(redirect_uri, state, error, description)

    if params.get("response_type") != "code":
        raise refuse("unsupported_response_type", "response_type must be code")
    challenge = params.get("code_challenge")
    if challenge is None or params.get("code_challenge_method") != "S256":
        raise refuse("invalid_request", "PKCE is required: code_challenge with method S256")
    if not _CHALLENGE.fullmatch(challenge):
        raise refuse("invalid_request", "code_challenge must be a base64url SHA-256")
    requested = params.get("scope", "").split()
    scopes = tuple(dict.fromkeys(requested)) or settings.cognito_oauth_scopes
    allowed = frozenset(STANDARD_SCOPES) | frozenset(settings.cognito_oauth_scopes)
    if unknown := [scope for scope in scopes if scope not in allowed]:
        raise refuse("invalid_scope", f"scope {unknown[0]} is not allowed for this client")
    if "idp_identifier" in params:
        raise refuse("invalid_request", "idp_identifier is not supported; use identity_provider")
    provider = params.get("identity_provider")
    if provider == "COGNITO":
        provider = None
    elif provider is not None and provider not in FEDERATED_PROVIDERS:
        raise refuse(
            "invalid_request",
            f"identity_provider must be COGNITO or {', '.join(FEDERATED_PROVIDERS)}",
        )
    return AuthorizeRequest(
        redirect_uri=redirect_uri,
        state=state,
        scopes=scopes,
        code_challenge=challenge,
        provider=provider,
        nonce=params.get("nonce"),
    )


def _to_app(redirect_uri: str, state: str | None, values: dict[str, str]) -> Response:
    """Back to the app's redirect URI with these values and the request's state."""
    query = urlencode(values if state is None else {**values, "state": state})
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{query}", 302, headers=_NO_STORE)


def _error_page(error: str, description: str) -> HTMLResponse:
    body = (
        "<h1>Sign-in error</h1>"
        f"<p><code>{html.escape(error)}</code>: {html.escape(description)}</p>"
    )
    return HTMLResponse(_page("Sign-in error", body), 400, headers=_PAGE_HEADERS)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font:16px system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
        "label{display:block;margin:1rem 0 .25rem}input[type=email],input[type=text]"
        "{width:100%;padding:.5rem;box-sizing:border-box}button{margin-top:1.5rem;"
        "padding:.6rem 1.2rem}.warning{background:#fff3cd;padding:.75rem;border-radius:4px}"
        ".error{color:#a00}</style></head><body>"
        f"{body}</body></html>"
    )


def _sign_in_page(
    request: AuthorizeRequest, settings: Settings, *, email: str = "", problem: str = ""
) -> str:
    who = f"{request.provider} (a fake one)" if request.provider else "Popmap"
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in request.query().items()
    )
    staff = html.escape(settings.staff_group)
    error = f'<p class="error" role="alert">{html.escape(problem)}</p>' if problem else ""
    body = (
        f"<h1>Sign in with {html.escape(who)}</h1>"
        '<p class="warning">Development only: the local identity provider of Popmap signs'
        " in anyone with any email, without a password. It runs only while no Cognito user"
        " pool is configured.</p>"
        f'{error}<form method="post" action="/login">{hidden}'
        '<label for="email">Email</label>'
        '<input id="email" name="email" type="email" required autofocus'
        f' value="{html.escape(email)}">'
        f'<label><input type="checkbox" name="staff" value="yes"> member of the'
        f" <code>{staff}</code> group (moderates)</label>"
        '<label for="groups">Other groups (optional, comma-separated)</label>'
        '<input id="groups" name="groups" type="text">'
        '<button type="submit">Sign in</button></form>'
    )
    return _page(f"Sign in with {who}", body)


async def authorize(request: Request) -> Response:
    """Check the request and send the browser to the sign-in page, as Cognito sends it
    to /login (or, for a federated provider, to the provider: here the same page)."""
    parsed = _authorize_request(request)
    if isinstance(parsed, Response):
        return parsed
    return RedirectResponse(f"/login?{urlencode(parsed.query())}", 302, headers=_NO_STORE)


async def login_page(request: Request) -> Response:
    parsed = _authorize_request(request)
    if isinstance(parsed, Response):
        return parsed
    settings: Settings = request.app.state.local_sign_in.settings
    return HTMLResponse(_sign_in_page(parsed, settings), headers=_PAGE_HEADERS)


def _authorize_request(request: Request) -> AuthorizeRequest | Response:
    """The request's authorize parameters, checked, or the page or redirect refusing them."""
    settings: Settings = request.app.state.local_sign_in.settings
    try:
        params = _single_values(request.query_params.multi_items())
        return parse_authorize(params, settings)
    except (_PageError, _RedirectError) as refused:
        return refused.answer()


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body, each name at most once."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _PageError("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise _PageError("invalid_request", "the body is too large")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise _PageError("invalid_request", "the body is not a form") from None
    return _single_values(pairs)


def _person(form: Mapping[str, str], provider: str | None, settings: Settings) -> LocalPerson:
    email = form.get("email", "").strip()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ValueError("Enter an email address such as ana@example.com.")
    groups = [g for g in re.split(r"[,\s]+", form.get("groups", "")) if g]
    if form.get("staff"):
        groups.insert(0, settings.staff_group)
    if len(groups) > MAX_GROUPS or not all(_GROUP.fullmatch(g) for g in groups):
        raise ValueError(f"Groups are up to {MAX_GROUPS} names of letters, digits and . @ + = - _.")
    return LocalPerson(email.lower(), tuple(dict.fromkeys(groups)), provider)


async def login_submit(request: Request) -> Response:
    """The sign-in form: a code for this person, and back to the app's callback."""
    settings: Settings = request.app.state.local_sign_in.settings
    try:
        form = await _form(request)
        parsed = parse_authorize(form, settings)
    except (_PageError, _RedirectError) as refused:
        return refused.answer()
    try:
        person = _person(form, parsed.provider, settings)
    except ValueError as exc:
        page = _sign_in_page(parsed, settings, email=form.get("email", ""), problem=str(exc))
        return HTMLResponse(page, 400, headers=_PAGE_HEADERS)
    code = await issue_code(
        redirect_uri=parsed.redirect_uri,
        code_challenge=parsed.code_challenge,
        scopes=parsed.scopes,
        person=person,
        nonce=parsed.nonce,
    )
    # 302 after a POST: the browser follows it with a GET, as from Cognito's /login.
    return _to_app(parsed.redirect_uri, parsed.state, {"code": code})


# --- /oauth2/token --------------------------------------------------------------------------


def _token_error(error: str, description: str, status: int = 400) -> JSONResponse:
    """Cognito's token-endpoint error, with Amplify's `error_message` as well."""
    return JSONResponse(
        {"error": error, "error_description": description, "error_message": description},
        status,
        headers=_NO_STORE,
    )


def _client_of(request: Request, form: Mapping[str, str]) -> str | None:
    """The client, from HTTP Basic or the body; a secret is refused (a public client)."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return form.get("client_id")
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return client if not secret else None


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def _client_form(request: Request) -> Mapping[str, str] | Response:
    """The form of a token or revoke request by the local app client, or the error: 401
    for a client that authenticated with HTTP Basic (RFC 6749 section 5.2), else 400."""
    try:
        form = await _form(request)
    except _PageError as refused:
        return _token_error(refused.error, refused.description)
    if _client_of(request, form) != LOCAL_CLIENT_ID:
        status = 401 if "authorization" in request.headers else 400
        return _token_error("invalid_client", f"the client must be {LOCAL_CLIENT_ID}", status)
    return form


async def token(request: Request) -> Response:
    local: LocalSignIn = request.app.state.local_sign_in
    form = await _client_form(request)
    if isinstance(form, Response):
        return form
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        return await _authorization_code(local, form)
    if grant_type == "refresh_token":
        return await _refresh(local, form)
    if grant_type == "client_credentials":
        return _token_error(
            "unauthorized_client", "use `popmap-gql dev-token --client-credentials`"
        )
    return _token_error(
        "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"
    )


async def _authorization_code(local: LocalSignIn, form: Mapping[str, str]) -> Response:
    code, redirect_uri, verifier = (form.get(n) for n in ("code", "redirect_uri", "code_verifier"))
    if not code or not redirect_uri:
        return _token_error("invalid_request", "code and redirect_uri are required")
    if verifier is None or not _VERIFIER.fullmatch(verifier):
        return _token_error(
            "invalid_request", "code_verifier (PKCE) is required: 43-128 characters"
        )
    grant = await redeem_code(code)  # used up from here on, whatever follows
    if grant is None:
        return _token_error("invalid_grant", "the code is unknown or was already used")
    if not grant.fresh:
        return _token_error("invalid_grant", "the code has expired")
    if grant.redirect_uri != redirect_uri:
        return _token_error("invalid_grant", "redirect_uri is not the one the code was issued for")
    if not secrets.compare_digest(s256(verifier), grant.code_challenge):
        return _token_error("invalid_grant", "code_verifier does not match the code_challenge")
    session, refresh_token = await create_session(grant.person, grant.scopes)
    tokens = mint_tokens(local.idp, session, nonce=grant.nonce)
    return _tokens_answer({**tokens, "refresh_token": refresh_token})


def _tokens_answer(tokens: dict[str, str]) -> JSONResponse:
    """The token endpoint's answer: the tokens, their lifetime and type."""
    body = {**tokens, "expires_in": TOKEN_SECONDS, "token_type": "Bearer"}
    return JSONResponse(body, headers=_NO_STORE)


async def _refresh(local: LocalSignIn, form: Mapping[str, str]) -> Response:
    refresh_token = form.get("refresh_token")
    if not refresh_token:
        return _token_error("invalid_request", "refresh_token is required")
    session = await session_of_refresh_token(refresh_token)
    if session is None or session.expired or session.revoked:
        return _token_error("invalid_grant", "the refresh token is invalid, expired or revoked")
    return _tokens_answer(mint_tokens(local.idp, session))


async def revoke(request: Request) -> Response:
    """/oauth2/revoke (RFC 7009): revoke a refresh token and the tokens of its sign-in.
    An unknown token is answered 200 too, so the endpoint tells nothing about tokens."""
    form = await _client_form(request)
    if isinstance(form, Response):
        return form
    refresh_token = form.get("token")
    if not refresh_token:
        return _token_error("invalid_request", "token is required")
    session = await session_of_refresh_token(refresh_token)
    if session is not None:
        await revoke_session(session.origin_jti)
    return Response(status_code=200, headers=_NO_STORE)


# --- /logout, /oauth2/userInfo, the JWKS ------------------------------------------------------


async def logout(request: Request) -> Response:
    """Back to an allowed sign-out URL (`logout_uri`), or to the sign-in page again
    (`redirect_uri` and `response_type`). There is no hosted-UI session cookie to clear:
    every sign-in shows the page."""
    local: LocalSignIn = request.app.state.local_sign_in
    try:
        params = _single_values(request.query_params.multi_items())
    except _PageError as refused:
        return refused.answer()
    if params.get("client_id") != LOCAL_CLIENT_ID:
        return _error_page("invalid_request", f"client_id must be {LOCAL_CLIENT_ID}")
    logout_uri = params.get("logout_uri")
    if logout_uri is not None:
        if logout_uri not in local.settings.cognito_redirect_sign_out:
            return _error_page(
                "invalid_request",
                "logout_uri is not one of the sign-out URLs (AWS_COGNITO_REDIRECT_SIGN_OUT)",
            )
        return RedirectResponse(logout_uri, 302, headers=_NO_STORE)
    if "redirect_uri" in params:
        return RedirectResponse(f"/oauth2/authorize?{urlencode(params)}", 302, headers=_NO_STORE)
    return _error_page("invalid_request", "logout needs logout_uri (or redirect_uri)")


def _bearer_error(status: int, error: str, description: str) -> JSONResponse:
    challenge = f'Bearer error="{error}", error_description="{description}"'
    return JSONResponse(
        {"error": error, "error_description": description},
        status,
        headers={"WWW-Authenticate": challenge, **_NO_STORE},
    )


async def userinfo(request: Request) -> Response:
    """The signed-in person's attributes, for an access token with the openid scope."""
    local: LocalSignIn = request.app.state.local_sign_in
    try:
        access_token = bearer_token(request.headers.get("authorization", ""))
        claims, session = await local.access(access_token, scope="openid")
    except InvalidToken:
        return _bearer_error(401, "invalid_request", "Authorization must be 'Bearer <token>'")
    except AccessRefused as refused:
        if refused.kind == "scope":
            return _bearer_error(403, "insufficient_scope", "the openid scope is required")
        return _bearer_error(401, "invalid_token", refused.message)
    return JSONResponse(
        {**local.attributes(claims, session), "username": claims.username}, headers=_NO_STORE
    )


async def jwks(request: Request) -> Response:
    local: LocalSignIn = request.app.state.local_sign_in
    return JSONResponse(local.idp.public_jwks(), headers={"Cache-Control": "max-age=3600"})


def hosted_ui_routes() -> list[Route]:
    return [
        Route("/oauth2/authorize", authorize, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/oauth2/token", token, methods=["POST"]),
        Route("/oauth2/revoke", revoke, methods=["POST"]),
        Route("/oauth2/userInfo", userinfo, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["GET"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
    ]
