"""From an Authorization header to a viewer: the one entry point of authentication."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import httpx

from popmap_gql.auth.jwks import JWKSCache
from popmap_gql.auth.local_idp import LOCAL_ISSUER, LocalIdentityProvider
from popmap_gql.auth.provisioning import StoredUser, provision_user, update_profile
from popmap_gql.auth.tokens import TokenClaims, TokenVerifier
from popmap_gql.auth.userinfo import Profile, UserInfoClient
from popmap_gql.auth.viewer import ANONYMOUS_VIEWER, Viewer
from popmap_gql.config import Settings
from popmap_gql.errors import InvalidToken
from popmap_gql.memory import LRU

__all__ = ["Authenticator", "bearer_token", "build_authenticator"]

logger = logging.getLogger(__name__)

TOKEN_CACHE_SIZE = 10_000
USER_CACHE_SIZE = 10_000
# Profile fields (email, names) another worker changed show up here after this long.
USER_CACHE_SECONDS = 60.0

# RFC 6750 section 2.1: b64token, the characters a bearer token may have.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class Authenticator:
    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        staff_group: str,
        userinfo: UserInfoClient | None = None,
        userinfo_retry_seconds: float = 300.0,
    ) -> None:
        self.verifier = verifier
        self.staff_group = staff_group
        self.userinfo = userinfo
        self._userinfo_retry_seconds = userinfo_retry_seconds
        self._userinfo_not_before: dict[tuple[str, str], float] = {}
        # A verified token stays valid until it expires, and an identity's user never
        # changes: remembering both keeps signature checks and lookups off the hot path.
        self._tokens: LRU[str, TokenClaims] = LRU(max_entries=TOKEN_CACHE_SIZE)
        self._users: LRU[tuple[str, str], tuple[float, StoredUser]] = LRU(
            max_entries=USER_CACHE_SIZE
        )
        # The viewer a token resolved to, while the token is valid and the user entry it
        # was built from is still the current one: a repeat request costs two lookups.
        # An ID token that changes the profile replaces the user entry, so every cached
        # viewer of that person (their access tokens too) is rebuilt at once.
        self._viewers: LRU[str, _KnownViewer] = LRU(max_entries=TOKEN_CACHE_SIZE)

    async def authenticate(self, authorization: str | None) -> Viewer:
        """The viewer for this header; no header is anonymous, a bad one InvalidToken."""
        if authorization is None:
            return ANONYMOUS_VIEWER
        # Every cached token passed bearer_token, so a hit needs only the cheap split
        # (checking a 1 KB token's characters costs more than the rest of a hit).
        known = self._viewers.get(_bearer_candidate(authorization))
        if known is not None and self._still_current(known):
            return known.viewer
        token = bearer_token(authorization)
        claims = await self._verify(token)
        if claims.is_service:
            # No user row, no profile, no groups: the token's scopes are its only powers.
            return Viewer(client_id=claims.service_client, scopes=claims.scopes)
        entry = await self._user(claims)
        user = await self._complete_profile(entry[1], claims, token)
        if user != entry[1]:
            entry = (time.monotonic(), user)
            self._users.put((claims.issuer, claims.sub), entry)
        viewer = Viewer(
            user_id=user.id,
            username=user.username,
            email=user.email,
            first_name=user.first_name,
            last_name=user.last_name,
            identity_provider=user.identity_provider,
            groups=claims.groups,
            is_staff=self.staff_group in claims.groups,
        )
        # Not while an incomplete profile may still be completed by userInfo.
        if user.profile_complete or self.userinfo is None:
            key = (claims.issuer, claims.sub)
            self._viewers.put(token, _KnownViewer(viewer, key, entry, claims.expires_at))
        return viewer

    async def expires_at(self, authorization: str) -> float:
        """When the token of a header `authenticate` accepted expires (seconds since the
        epoch): a WebSocket stays open until then (live/ws.py)."""
        known = self._viewers.get(_bearer_candidate(authorization))
        if known is not None:
            return known.expires_at
        return (await self._verify(bearer_token(authorization))).expires_at

    def _still_current(self, known: _KnownViewer) -> bool:
        """The token has not expired and the user entry is the one the viewer came from."""
        if time.time() >= known.expires_at:
            return False
        entry = self._users.get(known.user_key)
        return entry is known.user_entry and time.monotonic() - entry[0] < USER_CACHE_SECONDS

    async def _verify(self, token: str) -> TokenClaims:
        claims = self._tokens.get(token)
        if claims is not None and claims.expires_at > time.time():
            return claims
        claims = await self.verifier.verify(token)
        self._tokens.put(token, claims)
        return claims

    async def _user(self, claims: TokenClaims) -> tuple[float, StoredUser]:
        """The user of these claims and when that was read (monotonic)."""
        key = (claims.issuer, claims.sub)
        cached = self._users.get(key)
        if cached is not None and time.monotonic() - cached[0] < USER_CACHE_SECONDS:
            return cached
        entry = (time.monotonic(), await provision_user(claims))
        self._users.put(key, entry)
        return entry

    async def _complete_profile(
        self, user: StoredUser, claims: TokenClaims, token: str
    ) -> StoredUser:
        profile = claims if claims.is_id_token else await self._userinfo(user, claims, token)
        if profile is None:
            return user
        return await update_profile(
            user,
            email=profile.email,
            first_name=profile.given_name,
            last_name=profile.family_name,
            issuer=claims.issuer,
            sub=claims.sub,
        )

    async def _userinfo(self, user: StoredUser, claims: TokenClaims, token: str) -> Profile | None:
        """Access tokens carry no email: ask userInfo, at most once per retry interval."""
        if user.profile_complete or self.userinfo is None:
            return None
        key = (claims.issuer, claims.sub)
        now = time.monotonic()
        if now < self._userinfo_not_before.get(key, 0.0):
            return None
        if len(self._userinfo_not_before) > 10_000:  # bounded memory under many new users
            self._userinfo_not_before.clear()
        self._userinfo_not_before[key] = now + self._userinfo_retry_seconds
        profile = await self.userinfo.fetch(token)
        if profile is not None:
            self._userinfo_not_before.pop(key, None)
        return profile


@dataclass(frozen=True, slots=True)
class _KnownViewer:
    viewer: Viewer
    user_key: tuple[str, str]  # (issuer, sub)
    user_entry: tuple[float, StoredUser]  # compared by identity with the current entry
    expires_at: float  # the token's exp (epoch)


def _bearer_candidate(authorization: str) -> str:
    """What follows `Bearer` and one or more spaces (RFC 6750 section 2.1: the scheme in
    any case, RFC 9110 section 11.1; whitespace around a field value is not part of it);
    "" when the value does not start that way. The token's characters are not checked."""
    scheme, _, rest = authorization.strip(" \t").partition(" ")
    return rest.lstrip(" ") if scheme.lower() == "bearer" else ""


def bearer_token(authorization: str) -> str:
    """The token of an RFC 6750 `Authorization: Bearer <token>` value; InvalidToken else."""
    token = _bearer_candidate(authorization)
    if not _B64TOKEN.fullmatch(token):
        raise InvalidToken("Authorization must be 'Bearer <token>'")
    return token


def build_authenticator(settings: Settings, http: httpx.AsyncClient) -> Authenticator:
    """Cognito when a pool is configured; otherwise the local development provider."""
    if not settings.cognito_configured:
        logger.warning(
            "NO COGNITO USER POOL CONFIGURED: trusting the LOCAL DEVELOPMENT identity provider"
            " (issuer %s). Set AWS_COGNITO_USER_POOL_ID in production.",
            LOCAL_ISSUER,
        )
        verifier = LocalIdentityProvider(settings.data_dir).verifier(settings)
        return Authenticator(verifier, staff_group=settings.staff_group)
    keys = JWKSCache(settings.cognito_jwks_url, http, cooldown=settings.jwks_cooldown_seconds)
    verifier = TokenVerifier(
        issuer=settings.cognito_issuer,
        client_ids=settings.cognito_app_client_ids,
        keys=keys,
        leeway=settings.token_leeway_seconds,
        service_client_ids=settings.cognito_service_client_ids,
        resource_server=settings.cognito_resource_server,
    )
    userinfo_url = settings.cognito_userinfo_url
    userinfo = UserInfoClient(userinfo_url, http) if userinfo_url else None
    return Authenticator(
        verifier,
        staff_group=settings.staff_group,
        userinfo=userinfo,
        userinfo_retry_seconds=settings.userinfo_retry_seconds,
    )
