"""A stand-in for Cognito's servers on loopback: JWKS and userInfo, with a hit counter.

Only what lies outside this machine is faked; tokens are real RS256 JWTs signed with keys
generated here, and the API fetches keys from this server over real HTTP.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.processes import clean_env

POOL_ID = "us-east-1_PopmapTest1"
REGION = "us-east-1"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{POOL_ID}"
WEB_CLIENT = "web-client-id"
MOBILE_CLIENT = "mobile-client-id"
# App clients with the client-credentials grant (other servers), and their secrets.
SERVICE_CLIENT = "service-client-id"
OTHER_SERVICE_CLIENT = "other-service-client-id"
SERVICE_SECRETS = {SERVICE_CLIENT: "service-secret", OTHER_SERVICE_CLIENT: "other-secret"}
RESOURCE_SERVER = "popmap"


def _b64uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    @property
    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kid": self.kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "n": _b64uint(numbers.n),
            "e": _b64uint(numbers.e),
        }

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass
class FakeCognito:
    """Serves JWKS for the pool and userInfo; tests flip `jwks_status` or `userinfo_status`,
    or set the very bytes of an answer (`jwks_body`, `userinfo_body`)."""

    key: SigningKey = field(default_factory=lambda: SigningKey("pool-key-1"))
    attacker_key: SigningKey = field(default_factory=lambda: SigningKey("attacker-key"))
    hits: Counter[str] = field(default_factory=Counter)
    jwks_status: int = 200
    userinfo_status: int = 200
    jwks_body: bytes | None = None
    userinfo_body: bytes | None = None
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)
    base_url: str = ""
    # Tokens the token endpoint hands out before good ones (e.g. one the API refuses).
    queued_service_tokens: list[str] = field(default_factory=list)

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/{POOL_ID}/.well-known/jwks.json"

    @property
    def userinfo_url(self) -> str:
        return f"{self.base_url}/oauth2/userInfo"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth2/token"

    def server_env(self, database_url: str, data_dir: Path, **more: str) -> dict[str, str]:
        """The environment of a `popmap-gql serve` trusting this pool (and its service
        client), on `database_url` with its data in `data_dir`, plus `more`."""
        return clean_env(
            **{
                "DATABASE_URL": database_url,
                "POPMAP_DATA_DIR": str(data_dir),
                "AWS_COGNITO_USER_POOL_ID": POOL_ID,
                "AWS_COGNITO_APP_CLIENT_ID": WEB_CLIENT,
                "AWS_COGNITO_SERVICE_CLIENT_IDS": SERVICE_CLIENT,
                "AWS_COGNITO_JWKS_URL": self.jwks_url,
                "AWS_COGNITO_USERINFO_URL": self.userinfo_url,
                **more,
            }
        )

    def app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            self.hits["jwks"] += 1
            if self.jwks_status != 200:
                return Response("unavailable", status_code=self.jwks_status)
            if self.jwks_body is not None:
                return Response(self.jwks_body, media_type="application/json")
            return JSONResponse({"keys": [self.key.jwk]})

        async def attacker_jwks(request: Request) -> Response:
            self.hits["attacker"] += 1
            return JSONResponse({"keys": [self.attacker_key.jwk]})

        async def userinfo(request: Request) -> Response:
            self.hits["userinfo"] += 1
            if self.userinfo_status != 200:
                return Response("unavailable", status_code=self.userinfo_status)
            if self.userinfo_body is not None:
                return Response(self.userinfo_body, media_type="application/json")
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            claims = jwt.decode(token, options={"verify_signature": False})
            profile = self.profiles.get(claims["sub"], {})
            return JSONResponse({"sub": claims["sub"], **profile})

        return Starlette(
            routes=[
                # any pool id: an emulator's pool (local_...) derives its JWKS URL the same way
                Route("/{pool}/.well-known/jwks.json", jwks),
                Route("/attacker/jwks.json", attacker_jwks),
                Route("/oauth2/userInfo", userinfo),
                Route("/oauth2/token", self._token_endpoint, methods=["POST"]),
            ]
        )

    async def _token_endpoint(self, request: Request) -> Response:
        """Cognito's client-credentials grant: HTTP Basic client id and secret, a form body."""
        self.hits["token"] += 1
        client, _, secret = (
            base64.b64decode(request.headers.get("authorization", "").removeprefix("Basic "))
            .decode()
            .partition(":")
        )
        form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
        if SERVICE_SECRETS.get(client) != secret or secret == "":
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        scope = form.get("scope", "")
        token = (
            self.queued_service_tokens.pop(0)
            if self.queued_service_tokens
            else self.service_token(client, scope.split())
        )
        return JSONResponse({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    # --- tokens -------------------------------------------------------------------------

    def claims(self, kind: str = "access", **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        sub = overrides.pop("sub", None) or str(uuid.uuid4())
        base: dict[str, Any] = {
            "sub": sub,
            "iss": ISSUER,
            "token_use": kind,
            "iat": now,
            "auth_time": now,
            "exp": now + 3600,
            "jti": str(uuid.uuid4()),
        }
        if kind == "access":
            base.update(client_id=WEB_CLIENT, username=sub, scope="openid email profile")
        else:
            base.update(aud=WEB_CLIENT, **{"cognito:username": sub, "email": f"{sub}@example.com"})
        base.update(overrides)
        return {key: value for key, value in base.items() if value is not None}

    def sign(
        self,
        claims: dict[str, Any],
        *,
        key: SigningKey | None = None,
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
    ) -> str:
        key = key or self.key
        return jwt.encode(
            claims, key.private, algorithm=algorithm, headers={"kid": key.kid, **(headers or {})}
        )

    def access_token(self, **overrides: Any) -> str:
        return self.sign(self.claims("access", **overrides))

    def id_token(self, **overrides: Any) -> str:
        return self.sign(self.claims("id", **overrides))

    def service_claims(
        self, client: str = SERVICE_CLIENT, scopes: list[str] | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """What Cognito puts in a client-credentials access token: `sub` and `client_id`
        are the app client, `scope` the granted custom scopes, no username."""
        now = int(time.time())
        base: dict[str, Any] = {
            "sub": client,
            "iss": ISSUER,
            "token_use": "access",
            "client_id": client,
            "scope": " ".join(scopes or []),
            "auth_time": now,
            "iat": now,
            "exp": now + 3600,
            "version": 2,
            "jti": str(uuid.uuid4()),
        }
        base.update(overrides)
        return {key: value for key, value in base.items() if value is not None}

    def service_token(
        self, client: str = SERVICE_CLIENT, scopes: list[str] | None = None, **overrides: Any
    ) -> str:
        return self.sign(self.service_claims(client, scopes, **overrides))


def b64url(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
