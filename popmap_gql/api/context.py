"""The per-request GraphQL context."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from starlette.requests import Request
from strawberry.types import Info as StrawberryInfo

from popmap_gql.auth.viewer import ANONYMOUS_VIEWER, Viewer
from popmap_gql.config import Settings
from popmap_gql.media.stores import public_base
from popmap_gql.read.loaders import Loaders, LoaderSetup

__all__ = ["Context", "Info"]


@dataclass
class Context:
    request: Request
    settings: Settings
    # how this schema's loaders build its objects (the schema's `loader_setup`)
    loader_setup: LoaderSetup
    viewer: Viewer = ANONYMOUS_VIEWER

    @cached_property
    def loaders(self) -> Loaders:
        """Built on first use: a request answered from the response cache needs none."""
        return self.loader_setup.loaders(self.viewer.audience)

    @cached_property
    def api_base(self) -> str:
        """The API's origin as this request reached it (behind trusted proxies, theirs)."""
        return str(self.request.base_url).rstrip("/")

    @cached_property
    def media_base(self) -> str:
        """What published media keys are appended to, to make their public URLs."""
        return public_base(self.settings) or self.api_base


Info = StrawberryInfo[Context, None]
