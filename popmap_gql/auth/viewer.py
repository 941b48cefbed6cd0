"""The viewer: the person or service a request acts for, or an anonymous one."""

from __future__ import annotations

from dataclasses import dataclass, field

from popmap_gql.db.powers import Audience, Scope

__all__ = ["ANONYMOUS_VIEWER", "Viewer"]


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: int | None = None
    username: str = ""
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    identity_provider: str = ""
    groups: tuple[str, ...] = ()
    is_staff: bool = False
    # A service (client credentials): no user, powers only from its scopes.
    client_id: str | None = None
    scopes: frozenset[Scope] = field(default_factory=frozenset)

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None or self.client_id is not None

    @property
    def is_service(self) -> bool:
        return self.client_id is not None

    @property
    def audience(self) -> Audience:
        return Audience(
            user_id=self.user_id,
            is_staff=self.is_staff,
            client_id=self.client_id,
            scopes=self.scopes,
        )


ANONYMOUS_VIEWER = Viewer()
