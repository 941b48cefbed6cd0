"""The documentation: generated parts are current, links stay inside the repository and land
on a heading, the README is a front door whose test command is the one CI runs, and a
malformed DATABASE_URL is refused without showing its password."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from popmap_gql.config import SETTINGS, ConfigError, load_settings
from tests.processes import ROOT, clean_env, popmap_gql
from tools import settings_docs

PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "ARCHITECTURE.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("bench/*.md"),
    ]
)


def test_env_example_and_the_configuration_table_are_generated_from_the_settings() -> None:
    generated = settings_docs.generate(settings_docs.PAGE.read_text(encoding="utf-8"))

    for path, text in generated.items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is stale: run .venv/bin/python -m tools.settings_docs"
        )


def test_every_setting_is_documented_once_with_its_meaning() -> None:
    generated = settings_docs.generate(settings_docs.PAGE.read_text(encoding="utf-8"))
    env_example, page = generated[settings_docs.ENV_EXAMPLE], generated[settings_docs.PAGE]
    meanings = settings_docs.meanings()

    assert len(SETTINGS) >= 58
    for setting in SETTINGS:
        name = setting.metadata["env"]
        assert len(re.findall(rf"^# {name}=", env_example, re.MULTILINE)) == 1, name
        assert len(re.findall(rf"^\| `{name}` \|", page, re.MULTILINE)) == 1, name
        assert len(meanings[setting.name]) > 10, name


def test_schema_graphql_is_what_export_schema_prints(tmp_path: Path) -> None:
    def export(*args: str) -> subprocess.CompletedProcess[str]:
        return popmap_gql(clean_env(), "export-schema", *args)

    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    printed = export()
    written = export("-o", str(tmp_path / "schema.graphql"))

    assert (printed.returncode, written.returncode) == (0, 0), printed.stderr + written.stderr
    assert printed.stdout == committed
    assert written.stdout == ""
    assert (tmp_path / "schema.graphql").read_text(encoding="utf-8") == committed


def test_a_setting_without_a_meaning_stops_the_generator(tmp_path: Path) -> None:
    """The meaning is the docstring under the field; the generator refuses a field without."""
    source = (ROOT / "popmap_gql" / "config.py").read_text(encoding="utf-8")
    stripped = source.replace('    """Deepest field nesting (`QUERY_TOO_DEEP`)."""\n', "", 1)
    assert stripped != source
    script = (
        "import popmap_gql.config as config\n"
        f"config.__file__ = {str(tmp_path / 'config.py')!r}\n"
        "from tools import settings_docs\n"
        "settings_docs.generate(settings_docs.PAGE.read_text())\n"
    )
    (tmp_path / "config.py").write_text(stripped, encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert result.returncode != 0
    assert "Settings.max_query_depth has no docstring" in result.stderr


PASSWORD = "pw-Zq7x9"


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://popmap:{PASSWORD}@db.internal/popmap",
        f"postgresql://popmap:{PASSWORD}@db.internal:port/popmap",
        f"postgresql://popmap:{PASSWORD}/x@db.internal/popmap",  # the port would be its tail
        f"postgresql://popmap:{PASSWORD}@db.internal:99999/popmap",
        f"http://popmap:{PASSWORD}@db.internal/popmap",
    ],
)
def test_a_malformed_database_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as refused:
        load_settings({"DATABASE_URL": url}, env_file=None)

    assert PASSWORD not in str(refused.value)


def test_the_server_refuses_a_malformed_database_url_without_its_password() -> None:
    result = popmap_gql(
        clean_env(DATABASE_URL=f"postgresql://popmap:{PASSWORD}/x@db.internal/popmap"), "serve"
    )

    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_land_on_a_heading(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)

    assert "../shared" not in text
    for target in targets:
        assert "://" not in target, target
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.is_relative_to(ROOT), target
        assert linked.exists(), target
        if anchor:
            assert anchor in _anchors(linked), target


SOURCES = [
    *(ROOT / "popmap_gql").rglob("*.py"),
    ROOT / "pyproject.toml",
    ROOT / ".ci" / "run",
    ROOT / "tools" / "settings_docs.py",
]


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: str(source.relative_to(ROOT)))
def test_code_cites_only_pages_and_sections_that_exist(source: Path) -> None:
    text = " ".join(source.read_text(encoding="utf-8").split()).replace("# ", "")

    for page, section in re.findall(r"(README|docs/[\w-]+\.md),? \"([^\"]+)\"", text):
        path = ROOT / ("README.md" if page == "README" else page)
        headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
        assert section in headings, f"{source.name} cites {page} {section!r}"
    for page in re.findall(r"docs/[\w-]+\.md", text):
        assert (ROOT / page).exists(), f"{source.name} cites {page}"


README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_a_front_door_that_links_every_docs_page() -> None:
    assert len(README.splitlines()) <= 250
    for page in (ROOT / "docs").glob("*.md"):
        assert f"](docs/{page.name})" in README, page.name


def test_ci_runs_the_readmes_test_command() -> None:
    commands = re.findall(r"```sh\n(python3 -m venv .*)\n```", README)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()

    assert len(commands) == 2
    assert commands[0].endswith("popmap-gql serve --demo")
    assert ci[-1].replace("--quiet ", "") == commands[1]


def _layers() -> list[str]:
    """ARCHITECTURE.md's chart of layers, lowest first (its first line: `a <- b <- c`)."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    chart = text.split("## Layers", 1)[1].split("```", 2)[1]
    return chart.strip().splitlines()[0].split(" <- ")


def test_every_module_imports_only_from_the_layers_left_of_its_own() -> None:
    layers = _layers()
    assert layers[0] == "config"
    assert layers[-1] == "cli"
    rank = {name: i for i, name in enumerate(layers)}
    package = ROOT / "popmap_gql"
    crossings = []
    for path in sorted(package.rglob("*.py")):
        own = path.relative_to(package).parts[0].removesuffix(".py")
        if own not in rank:
            continue  # beside the layers (logs, observe, files...): imported by any
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "popmap_gql" and len(parts) > 1:
                    target = parts[1]
                    if rank.get(target, -1) > rank[own]:
                        crossings.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert crossings == []
