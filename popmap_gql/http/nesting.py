"""How deeply a decoded JSON value nests, measured without recursion.

Request variables travel through code that recurses over them (orjson encoding the cache
key gives up at 255 levels, graphql-core's input coercion recurses per level), so the
endpoint refuses deep values before any of it runs.
"""

from __future__ import annotations

__all__ = ["MAX_JSON_DEPTH", "nests_deeper_than"]

# Far deeper than any input the schema takes (a test checks), far below every recursion
# limit on the way.
MAX_JSON_DEPTH = 32


def nests_deeper_than(value: object, limit: int) -> bool:
    """Whether objects and arrays in `value` nest more than `limit` levels (the outermost
    object is level 1); stops at the first level past the limit."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
