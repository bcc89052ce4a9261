"""The house's shape: README's layout section is the tree, every wing says what lives in it, the packages
configuration names every wing, and no module of kerasrnn/ takes part in a circle of imports."""

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kerasrnn"


def layout_lines() -> dict[str, str]:
    """{folder path relative to the repository: its line} from README's layout block (indented: inside kerasrnn/)."""
    section = ROOT.joinpath("README.md").read_text().split("## Layout", 1)[1]
    block = section.split("```", 2)[1]
    folders = {}
    for line in block.splitlines():
        match = re.match(r"^( *)([a-z_]+)/\s", line)
        if match:
            folder = match.group(2) if not match.group(1) else f"kerasrnn/{match.group(2)}"
            folders[folder] = line
    return folders


def wings() -> list[Path]:
    return sorted(path.parent for path in PACKAGE.glob("*/__init__.py"))


def test_readme_names_every_module_of_every_folder_and_nothing_else():
    folders = layout_lines()
    assert {f"kerasrnn/{wing.name}" for wing in wings()} <= set(folders), "a wing has no line in README's layout"
    for folder, line in folders.items():
        path = ROOT / folder
        assert path.is_dir(), f"README names a folder that is not there: {folder}"
        if folder.startswith("kerasrnn") or folder == "cli":
            named = set(re.findall(r"[a-z_]+\.(?:py|html)", line)) - {"__init__.py"}
            present = {file.name for file in path.iterdir() if file.suffix in (".py", ".html")} - {"__init__.py"}
            assert named == present, (
                f"{folder}: named but absent {sorted(named - present)}, absent from README {sorted(present - named)}"
            )


def test_every_wing_says_in_one_line_what_lives_there():
    for wing in wings():
        docstring = ast.get_docstring(ast.parse((wing / "__init__.py").read_text())) or ""
        summary, _, rest = docstring.partition("\n")
        assert len(summary) > 30 and summary.endswith("."), wing.name  # one line that says it
        assert not rest or rest.startswith("\n"), f"{wing.name}: the summary is one line, then a blank line"


def test_the_packages_configuration_names_every_wing():
    setuptools = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["tool"]["setuptools"]
    configured = set(setuptools["packages"]) - {"kerasrnn_cli"}
    assert configured == {"kerasrnn", *(f"kerasrnn.{wing.name}" for wing in wings())}
    assert setuptools["package-data"] == {"kerasrnn.serving": ["page.html"]}  # no data folder that looks like a package


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The kerasrnn modules `path` imports anywhere in it (at the top or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    # A package's own __init__ is not an edge (Python runs it first anyway); `kerasrnn` itself is the front door.
    return {name for name in found if name in known and name != "kerasrnn"}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(files)) - {name} for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_no_module_takes_part_in_a_circle_of_imports():
    graph = import_graph()
    assert "kerasrnn.studies.search" in graph["kerasrnn.api"]  # the graph sees imports inside functions
    assert circles(graph) == []


def test_a_circle_is_seen():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
