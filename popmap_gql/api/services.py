"""What a service (another server, signed in with client credentials) sees of itself."""

from __future__ import annotations

import strawberry

from popmap_gql.api.privacy import private_type
from popmap_gql.auth.viewer import Viewer as AuthViewer
from popmap_gql.config import Settings

__all__ = ["ServiceClient", "service_client"]


@private_type
@strawberry.type(description="The other server a request acts for (client credentials).")
class ServiceClient:
    client_id: str = strawberry.field(description="Its Cognito app client id.")
    scopes: list[str] = strawberry.field(
        description="The scopes of its token that this API knows, e.g. popmap/moderate;"
        " scopes it does not know, or of other resource servers, are left out."
    )


def service_client(viewer: AuthViewer, settings: Settings) -> ServiceClient | None:
    if viewer.client_id is None:
        return None
    server = settings.cognito_resource_server
    return ServiceClient(
        client_id=viewer.client_id,
        scopes=sorted(f"{server}/{scope.value}" for scope in viewer.scopes),
    )
