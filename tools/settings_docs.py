"""Write `.env.example` and docs/configuration.md's settings table from the declarations
in popmap_gql/config.py (run from the repository's root after adding or changing a
setting): `.venv/bin/python -m tools.settings_docs`. tests/test_docs.py fails while
either file differs from what this writes."""

from __future__ import annotations

import ast
import itertools
import re
import sys
import textwrap
from pathlib import Path

from popmap_gql import config

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / ".env.example"
MARKERS = ("<!-- settings:begin -->\n", "<!-- settings:end -->")
# The docs' group that starts at each of these settings, in declaration order.
SECTIONS = {
    "database_url": "Server",
    "log_level": "Logs, metrics and traces (docs/operations.md)",
    "max_query_depth": "Query limits (docs/api.md)",
    "db_pool_size": "Database (docs/operations.md, docs/deployment.md)",
    "shutdown_timeout_seconds": "Connections and shutdown (docs/deployment.md)",
    "compiled_reads": "Speed: compiled reads and the response cache (docs/operations.md)",
    "apq_max_documents": "Persisted queries and HTTP caching (docs/persisted-queries.md)",
    "db_listen_url": "Live updates: subscriptions over WebSocket (docs/live-updates.md)",
    "cognito_user_pool_id": "Sign-in: Cognito (docs/sign-in.md)",
    "cognito_service_client_ids": "Other servers (docs/services.md)",
    "media_bucket": "Logos and event images (docs/media.md)",
}
ENV_HEADER = """\
# Popmap GraphQL API settings, generated from popmap_gql/config.py by
# `python -m tools.settings_docs`: do not edit by hand. Copy to .env (never committed) or set
# them in the environment; the environment wins over .env. A malformed value stops start-up
# with a message naming it. Each line shows the setting's default; docs/configuration.md
# has the same in one table.
"""


def meanings() -> dict[str, str]:
    """Each setting's docstring, on one line, read from config.py's source."""
    tree = ast.parse(Path(config.__file__).read_text(encoding="utf-8"))
    (settings,) = (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    return {
        node.target.id: " ".join(str(doc.value.value).split())
        for node, doc in itertools.pairwise(settings.body)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
    }


def shown(value: object) -> str:
    """A default as one would write it in the environment."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def linked(text: str) -> str:
    """`docs/<page>.md` as a link from docs/configuration.md."""
    return re.sub(r"docs/([\w-]+\.md)", r"[\1](\1)", text)


def generate(page: str) -> dict[Path, str]:
    """The text of `.env.example` and of docs/configuration.md, whose text outside the
    table's markers is kept from `page`."""
    known = meanings()
    table = ["| Variable | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    env = [ENV_HEADER]
    for setting in config.SETTINGS:
        if setting.name not in known:
            raise SystemExit(f"config.py: Settings.{setting.name} has no docstring (its meaning)")
        name, default, meaning = (
            setting.metadata["env"],
            shown(setting.default),
            known[setting.name],
        )
        if section := SECTIONS.get(setting.name):
            table.append(f"| **{linked(section)}** | | | |")
            env.append(f"\n\n# --- {section} ".ljust(92, "-"))
        value = f"`{default}`" if default else "unset"
        table.append(
            f"| `{name}` | {setting.metadata['kind'].label} | {value} | {linked(meaning)} |"
        )
        lines = textwrap.wrap(meaning + (f" Default: {default}" if default else ""), 88)
        env.append("\n\n" + "".join(f"# {line}\n" for line in lines) + f"# {name}={default}")
    before, begin, rest = page.partition(MARKERS[0])
    _old, end, after = rest.partition(MARKERS[1])
    if not begin or not end:
        raise SystemExit(f"{PAGE} needs the markers {MARKERS}")
    return {
        ENV_EXAMPLE: "".join(env) + "\n",
        PAGE: before + begin + "\n".join(table) + "\n" + end + after,
    }


def main() -> int:
    for path, text in generate(PAGE.read_text(encoding="utf-8")).items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
