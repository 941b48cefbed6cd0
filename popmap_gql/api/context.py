"""The per-request GraphQL context."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from strawberry.types import Info as StrawberryInfo

from popmap_gql.api.loaders import Loaders
from popmap_gql.auth.viewer import ANONYMOUS_VIEWER, Viewer
from popmap_gql.config import Settings

__all__ = ["Context", "Info"]


@dataclass
class Context:
    request: Request
    response: Response
    settings: Settings
    viewer: Viewer = ANONYMOUS_VIEWER
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.viewer.audience)


Info = StrawberryInfo[Context, None]
