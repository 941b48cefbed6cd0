"""Reading a DataLoader synchronously when it already holds the value.

The root resolvers prefetch what a query selects (see `prefetch`), so relation resolvers
usually find their values loaded: they answer synchronously and graphql-core makes no
coroutine or task for them. When nothing was prefetched they return an awaitable, which
graphql-core awaits, so they stay correct either way.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar, cast

from strawberry.dataloader import DataLoader

__all__ = ["Missing", "peek", "ready"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")


class Missing:
    """What `peek` returns when the loader does not hold the value yet."""


_MISSING = Missing()


def peek(loader: DataLoader[K, V], key: K) -> V | Missing:
    """The loader's value for `key` if it already holds one, else a Missing."""
    future = loader.cache_map.get(key)
    if (
        future is not None
        and future.done()
        and not future.cancelled()
        and future.exception() is None
    ):
        return future.result()
    return _MISSING


def ready(loader: DataLoader[K, V], key: K, convert: Callable[[V], R]) -> R:
    """`convert(value)` now if the loader already holds the value, else an awaitable of it.

    graphql-core awaits an awaitable returned by a sync resolver, so resolvers using this
    stay correct when nothing was prefetched; the annotation states the resolved type.
    """
    value = peek(loader, key)
    if not isinstance(value, Missing):
        return convert(value)

    async def later() -> R:
        return convert(await loader.load(key))

    return cast(R, later())
