"""A local identity provider for development without AWS: Cognito-shaped tokens, our own key.

Active only when no user pool is configured. Its private key lives in the data folder
(created on first use, readable by its owner only) and never leaves this machine.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.utils import to_base64url_uint

from popmap_gql.auth.jwks import StaticKeys
from popmap_gql.auth.tokens import TokenVerifier
from popmap_gql.config import ConfigError, Settings
from popmap_gql.files import write_whole

__all__ = [
    "LOCAL_CLIENT_ID",
    "LOCAL_ISSUER",
    "LOCAL_POOL_ID",
    "LOCAL_SERVICE_CLIENT_ID",
    "LocalIdentityProvider",
    "local_service_client_ids",
    "local_sub",
]

LOCAL_ISSUER = "http://localhost/popmap-local-idp"
LOCAL_CLIENT_ID = "popmap-local-client"
# A pool id of the AWS form, which Amplify insists on (it reads the region from it); no
# such pool exists on AWS, and the local provider's tokens name LOCAL_ISSUER, not it.
LOCAL_POOL_ID = "us-east-1_PopmapLocal"
# The service client the local provider trusts when AWS_COGNITO_SERVICE_CLIENT_IDS is unset,
# so that `dev-token --client-credentials` works against `serve` with no settings.
LOCAL_SERVICE_CLIENT_ID = "popmap-local-service"
_SUB_NAMESPACE = uuid.UUID("8a1c3f0e-4b7d-4e52-9a61-2f0d6c1b7e93")


def local_service_client_ids(settings: Settings) -> tuple[str, ...]:
    """The service clients the local provider's tokens may name."""
    return settings.cognito_service_client_ids or (LOCAL_SERVICE_CLIENT_ID,)


def local_sub(email: str) -> str:
    """The stable `sub` the local provider gives an email address."""
    return str(uuid.uuid5(_SUB_NAMESPACE, email.lower()))


def _issued(sub: str, ttl_seconds: int) -> dict[str, Any]:
    """The claims of every token the provider signs: whose, by whom, from now on."""
    now = int(time.time())
    return {"sub": sub, "iss": LOCAL_ISSUER, "iat": now, "auth_time": now, "exp": now + ttl_seconds}


def _access(client_id: str, scopes: Sequence[str]) -> dict[str, Any]:
    """What an access token adds, a person's or a service's, as Cognito's (version 2)."""
    return {
        "token_use": "access",
        "client_id": client_id,
        "scope": " ".join(scopes),
        "version": 2,
        "jti": str(uuid.uuid4()),
    }


class LocalIdentityProvider:
    def __init__(self, data_dir: Path) -> None:
        self.key_path = data_dir / "local-idp" / "private-key.pem"
        self._private_key = self._load_or_create()
        public_numbers = self._private_key.public_key().public_numbers()
        self._public_jwk = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "n": to_base64url_uint(public_numbers.n).decode(),
            "e": to_base64url_uint(public_numbers.e).decode(),
        }
        thumbprint = json.dumps(
            {k: self._public_jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":")
        )
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(thumbprint.encode()).digest())[
            :22
        ].decode()
        self._public_jwk["kid"] = self.kid

    def _load_or_create(self) -> rsa.RSAPrivateKey:
        if not self.key_path.exists():
            self.key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            # If two processes race, the first key wins and both use it.
            with contextlib.suppress(FileExistsError):
                write_whole(self.key_path, pem, replace=False, mode=0o600)
        try:
            loaded = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        except ValueError:
            loaded = None
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ConfigError(
                f"{self.key_path} does not hold an RSA key; remove it to make a new one"
                " (the tokens the old one signed stop verifying)"
            )
        return loaded

    def verifier(self, settings: Settings) -> TokenVerifier:
        """The verifier of this provider's tokens: people's and `dev-token`'s services'."""
        return TokenVerifier(
            issuer=LOCAL_ISSUER,
            client_ids=[LOCAL_CLIENT_ID],
            keys=StaticKeys({self.kid: jwt.PyJWK(self._public_jwk, algorithm="RS256")}),
            leeway=settings.token_leeway_seconds,
            service_client_ids=local_service_client_ids(settings),
            resource_server=settings.cognito_resource_server,
        )

    def mint(
        self,
        email: str,
        groups: list[str],
        *,
        ttl_seconds: int = 3600,
        sub: str | None = None,
        username: str | None = None,
        scopes: tuple[str, ...] = ("openid", "email", "profile"),
        session: dict[str, Any] | None = None,
        identity_claims: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        """An access token and an ID token for `email`, shaped like Cognito's.

        `session` adds the claims Cognito ties to one sign-in (`origin_jti`, `event_id`,
        `auth_time`), `identity_claims` more claims of the ID token (a federated user's
        `identities`, a `nonce`)."""
        sub = sub or local_sub(email)
        username = username or sub
        common = {**_issued(sub, ttl_seconds), "cognito:groups": groups, **(session or {})}
        access = {**common, **_access(LOCAL_CLIENT_ID, scopes), "username": username}
        identity = {
            **common,
            "token_use": "id",
            "aud": LOCAL_CLIENT_ID,
            "email": email,
            "email_verified": True,
            "cognito:username": username,
            **(identity_claims or {}),
            "jti": str(uuid.uuid4()),
        }
        return {"access_token": self._sign(access), "id_token": self._sign(identity)}

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JSON Web Key Set of this provider's public key, as Cognito publishes its."""
        return {"keys": [dict(self._public_jwk)]}

    def mint_client_credentials(
        self, client_id: str, scopes: list[str], *, ttl_seconds: int = 3600
    ) -> dict[str, str | int]:
        """What Cognito's token endpoint answers to the client-credentials grant: an
        access token whose `sub` and `client_id` are the app client, with no username."""
        access = {**_issued(client_id, ttl_seconds), **_access(client_id, scopes)}
        token = self._sign(access)
        return {"access_token": token, "expires_in": ttl_seconds, "token_type": "Bearer"}

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._private_key, "RS256", headers={"kid": self.kid})
