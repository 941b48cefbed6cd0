"""What a parsed document really holds, against what the document cache counts for it.

    .venv/bin/python -m bench.document_memory

For each kind of document (the benchmark's operations, long comments, long strings,
documents made of many tokens, syntax errors), it parses and validates distinct copies
with the server's own rules under tracemalloc, text included, and prints the bytes per
document, per byte of text and per token beside `document_bytes`'s estimate. The factors
in api/documents.py come from this table; tests/test_memory_by_bytes.py checks that the
estimate stays above every row.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Iterator

from bench import scenarios
from popmap_gql.api.documents import Documents, Prepared
from popmap_gql.api.schema import schema

SMALL = "{ categories { name } }"


def shapes() -> Iterator[tuple[str, str]]:
    """(name, text) of each kind of document measured."""
    for name in ("Q1", "Q2", "Q3", "M1_JOIN"):
        yield name, getattr(scenarios, name)
    yield "comment 95 KB", "# " + "x" * 95_000 + "\n" + SMALL
    yield "comment 45 K non-ASCII", "# " + "é" * 45_000 + "\n" + SMALL
    yield "1,900 comments", "#\n" * 1_900 + SMALL
    yield "string 90 KB", '{ events(filter: {search: "' + "y" * 90_000 + '"}) { totalCount } }'
    yield "1,900 fields", "{ categories { " + "name " * 1_900 + "} }"
    yield "300 selections", "{ " + "categories { name } " * 300 + "}"
    yield "30 aliases", "{ " + " ".join(f"a{i}: categories {{ name }}" for i in range(30)) + "}"
    yield "syntax error 90 KB", "{ categories { name " + "x" * 90_000


def measure(text: str, copies: int = 10) -> tuple[float, Prepared]:
    """Bytes held per distinct copy of `text` once parsed, validated and cached, the
    copy's own text included; and one of the prepared documents. A first copy is
    prepared before measuring, so that what graphql-core builds once per process (for
    the first document of a kind) is not counted."""
    documents = Documents(
        schema.documents.schema,
        schema.documents.rules,
        shape=schema.documents.shape,
        max_tokens=schema.documents.max_tokens,
        max_entries=copies + 1,
        max_bytes=1 << 40,
    )
    documents.prepare(f"#first\n{text}")
    gc.collect()
    tracemalloc.start()
    try:
        for n in range(copies):
            documents.prepare(f"#{n}\n{text}")
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = documents.prepare(f"#0\n{text}")
    return held / copies, kept


def tokens(prepared: Prepared) -> int:
    document = prepared.document
    token = document.loc.start_token if document is not None and document.loc else None
    count = 0
    while token is not None:
        count += 1
        token = token.next
    return count


def main() -> None:
    print(
        f"{'document':24} {'text B':>8} {'tokens':>6} {'held B':>9} {'/text B':>7}"
        f" {'estimate':>9} {'est/held':>8}"
    )
    for name, text in shapes():
        held, prepared = measure(text)
        size = sys.getsizeof(f"#0\n{text}")
        print(
            f"{name:24} {size:8} {tokens(prepared):6} {held:9.0f} {held / size:7.2f}"
            f" {prepared.size:9} {prepared.size / held:8.2f}"
        )


if __name__ == "__main__":
    main()
