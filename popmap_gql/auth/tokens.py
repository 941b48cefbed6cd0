"""Verification of Cognito access and ID tokens."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import jwt

from popmap_gql.auth.jwks import KeySource
from popmap_gql.config import ConfigError
from popmap_gql.db.powers import Scope
from popmap_gql.errors import InvalidToken

__all__ = ["MAX_TOKEN_BYTES", "TokenClaims", "TokenVerifier", "service_scopes"]

# Cognito tokens are 1-4 KB even with many groups; anything far larger is not one.
MAX_TOKEN_BYTES = 16 * 1024
ALGORITHM = "RS256"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says about its subject."""

    issuer: str
    sub: str
    token_use: str  # "access" or "id"
    username: str
    groups: tuple[str, ...]
    email: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    identity_provider: str | None = None
    # A service's token (client credentials): its app client and its scopes of our
    # resource server. None for people, whose tokens never carry service powers.
    service_client: str | None = None
    scopes: frozenset[Scope] = frozenset()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def expires_at(self) -> float:
        """The `exp` claim, in seconds since the epoch."""
        return float(self.raw["exp"])

    @property
    def is_service(self) -> bool:
        return self.service_client is not None

    @property
    def is_id_token(self) -> bool:
        """ID tokens carry the profile (email, names); access tokens do not."""
        return self.token_use == "id"  # noqa: S105  # a claim value, not a password


def _str_claim(claims: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise InvalidToken(f"token has no {name} claim")
        return None
    if not isinstance(value, str) or not value or len(value) > 512:
        raise InvalidToken(f"token claim {name} is malformed")
    return value


def _check_numeric_dates(claims: dict[str, Any]) -> None:
    """exp, iat and nbf are JSON numbers (RFC 7519 NumericDate), as AWS documents them.

    PyJWT compares int(value), so it takes "1700000000" and true; we refuse those, and
    numbers no float can hold, which the expiry arithmetic could not use.
    """
    for name in ("exp", "iat", "nbf"):
        if name not in claims:
            continue  # exp and iat are required, and PyJWT has checked that
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidToken(f"token claim {name} is not a number")
        try:
            finite = math.isfinite(float(value))
        except OverflowError:
            finite = False
        if not finite:
            raise InvalidToken(f"token claim {name} is out of range")


def _groups(claims: dict[str, Any]) -> tuple[str, ...]:
    groups = claims.get("cognito:groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise InvalidToken("token claim cognito:groups is malformed")
    return tuple(groups)


def _identity_provider(claims: dict[str, Any], username: str) -> str | None:
    """Facebook, Google, ... for federated sign-ins; None for the pool's own users."""
    identities = claims.get("identities")
    if isinstance(identities, list) and identities and isinstance(identities[0], dict):
        name = identities[0].get("providerName")
        if isinstance(name, str) and name:
            return name[:64]
    prefix, sep, _ = username.partition("_")
    if sep and prefix in {"Facebook", "Google", "SignInWithApple", "LoginWithAmazon"}:
        return prefix
    return None


def service_scopes(claims: dict[str, Any], resource_server: str) -> frozenset[Scope]:
    """The known scopes of our resource server in a client-credentials token's `scope`.

    Scopes of other resource servers, and names of ours that this version does not know
    (a scope added in Cognito before the API uses it), are ignored: the token keeps the
    powers it names that we know. A `scope` that is not a string is a malformed token.
    """
    value = claims.get("scope", "")
    if not isinstance(value, str):
        raise InvalidToken("token claim scope is malformed")
    known = {f"{resource_server}/{scope.value}": scope for scope in Scope}
    return frozenset(known[item] for item in value.split() if item in known)


class TokenVerifier:
    """Checks a bearer token against one issuer, its keys and the configured app clients:
    `client_ids` issue people's tokens, `service_client_ids` services' (client credentials)."""

    def __init__(
        self,
        *,
        issuer: str,
        client_ids: Collection[str],
        keys: KeySource,
        leeway: float = 30.0,
        service_client_ids: Collection[str] = (),
        resource_server: str = "popmap",
    ) -> None:
        self.issuer = issuer
        self.client_ids = frozenset(client_ids)
        self.service_client_ids = frozenset(service_client_ids)
        if shared := self.client_ids & self.service_client_ids:
            # A people's client with client credentials would let one token be both.
            raise ConfigError(f"app clients both for people and services: {sorted(shared)}")
        self.resource_server = resource_server
        self.keys = keys
        self.leeway = leeway

    async def verify(self, token: str) -> TokenClaims:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token is too large")
        if token.count(".") != 2:
            raise InvalidToken("token is not a signed JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("token header is malformed") from exc
        # Only the algorithm and kid are read from the header; jku, x5u, jwk and x5c
        # would let the token name its own key and are never consulted.
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("token algorithm is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise InvalidToken("token has no usable kid")
        # Every key is an RS256 PyJWK (parse_jwks, LocalIdentityProvider.verifier), and
        # PyJWT verifies with the key's own algorithm once the header names that one.
        key = await self.keys.get_key(kid)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "sub", "token_use"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(_describe(exc)) from exc
        _check_numeric_dates(claims)
        return self._claims(claims)

    def _check_client(self, client: object) -> None:
        """The claim names one configured app client, as a string (a list is unhashable)."""
        if not isinstance(client, str) or client not in self.client_ids:
            raise InvalidToken("token was issued to another app client")

    def _claims(self, claims: dict[str, Any]) -> TokenClaims:
        kind = claims.get("token_use")
        client = claims.get("client_id")
        if kind == "access" and isinstance(client, str) and client in self.service_client_ids:
            return self._service_claims(claims, client)
        if kind == "access":
            self._check_client(claims.get("client_id"))
            username = _str_claim(claims, "username", required=True)
        elif kind == "id":
            # Cognito's (and OIDC's usual) single audience: a string, never a list.
            self._check_client(claims.get("aud"))
            username = _str_claim(claims, "cognito:username", required=True)
        else:
            raise InvalidToken("token_use must be access or id")
        assert username is not None
        sub = _str_claim(claims, "sub", required=True)
        assert sub is not None
        return TokenClaims(
            issuer=self.issuer,
            sub=sub,
            token_use=kind,
            username=username,
            groups=_groups(claims),
            email=_str_claim(claims, "email") if kind == "id" else None,
            given_name=_str_claim(claims, "given_name"),
            family_name=_str_claim(claims, "family_name"),
            identity_provider=_identity_provider(claims, username),
            raw=claims,
        )

    def _service_claims(self, claims: dict[str, Any], client: str) -> TokenClaims:
        """A service's access token: client credentials name no user, and `sub` is the
        client itself. A service client never issues people's tokens, so a username on
        one is refused rather than trusted either way."""
        if "username" in claims:
            raise InvalidToken("a service client's token must not name a user")
        if claims["sub"] != client:  # required by jwt.decode; a str, as `client` is
            raise InvalidToken("a service token's sub must be its client_id")
        return TokenClaims(
            issuer=self.issuer,
            sub=client,
            token_use="access",  # noqa: S106  # a claim value, not a password
            username="",
            groups=(),  # never staff through groups
            service_client=client,
            scopes=service_scopes(claims, self.resource_server),
            raw=claims,
        )


def _describe(exc: jwt.PyJWTError) -> str:
    """A short, fixed description for WWW-Authenticate; never echoes token content."""
    match exc:
        case jwt.ExpiredSignatureError():
            return "token has expired"
        case jwt.ImmatureSignatureError():
            return "token is not yet valid"
        case jwt.InvalidIssuerError():
            return "token was issued by another issuer"
        case jwt.MissingRequiredClaimError():
            return f"token has no {exc.claim} claim"
        case jwt.InvalidSignatureError():
            return "token signature is invalid"
        case _:
            return "token is malformed"
