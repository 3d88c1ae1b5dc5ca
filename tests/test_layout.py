"""The layout of docs/architecture.md holds: apps import only to their left, no module imports itself back
through others, and no source file grows past the size a reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# core <- registry <- patients <- followup <- quality <- {notifications, reporting, intake} <- devdata, config <- bench
RANK = {
    "core": 0,
    "registry": 1,
    "patients": 2,
    "followup": 3,
    "quality": 4,
    "notifications": 5,
    "reporting": 5,
    "intake": 5,
    "devdata": 6,
    "config": 6,
    "bench": 7,
}
MAX_LINES = 900


def _modules() -> dict[str, Path]:
    found = {}
    for package in RANK:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every module of ours that `name` imports, at the top or inside a function."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
                break
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items() if ".migrations" not in name}


def test_apps_import_only_to_their_left():
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in _graph().items()
        for target in targets
        if source.split(".")[0] != target.split(".")[0] and RANK[target.split(".")[0]] >= RANK[source.split(".")[0]]
    )
    assert wrong == []


def test_no_import_circles():
    graph = _graph()
    circles, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph.get(name, ())):
            # A package's __init__ re-exporting its own submodules is not a circle through them.
            if name.startswith(target + "."):
                continue
            if state.get(target) == "open":
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_no_source_file_is_too_long():
    long_files = {
        str(path.relative_to(ROOT)): n
        for path in [*_modules().values(), *(ROOT / "tests").rglob("*.py")]
        if "migrations" not in path.parts and (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long_files == {}


def test_followup_holds_under_40_percent_of_the_application_code():
    lines: dict[str, int] = dict.fromkeys(RANK, 0)
    for name, path in _modules().items():
        if ".migrations" not in name and not name.startswith("bench"):
            lines[name.split(".")[0]] += len(path.read_text().splitlines())
    share = lines["followup"] / sum(lines.values())
    assert share < 0.40, lines


MAX_FUNCTION_LINES = 80


def test_a_long_function_says_why_in_its_docstring():
    unexplained = []
    for name, path in _modules().items():
        if ".migrations" in name:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and "Long because" not in (ast.get_docstring(node) or ""):
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert unexplained == []
