"""The package's layers (docs/architecture.rst), checked on the source: every
import of every module, those inside functions too, resolved to the module
it names.

* the public modules (``cosim_np``, ``sliding``, ``embedding``, ...) only
  validate, plan and dispatch; nothing below them imports them;
* the core (``_core``) imports no backend;
* a backend (``_cpu``, ``_cuda``, a future ``_dask``) imports the core and
  its own modules, never another backend, a public module or the
  dispatcher (``_backend``);
* only ``_cuda`` imports ``numba.cuda``;
* the package has no import cycle.
"""

import ast
import pathlib

import pytest

import cosim_np

PACKAGE = pathlib.Path(cosim_np.__file__).parent
# the backends, and the labelled-array wrapper (_xarray), which follows their rules
BACKENDS = ("_cpu", "_cuda", "_dask", "_xarray")
# Modules of the package root that are neither public functions nor a layer:
# the dispatcher, and the tools behind ``python -m cosim_np``.
TOOLS = {"cosim_np._backend", "cosim_np.__main__", "cosim_np._compile", "cosim_np.demo"}


def _modules():
    """``{module name: path}`` of every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name, path):
    """The package modules (and ``numba.cuda``) that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES or sub == "numba.cuda" else base)
    return {m for m in found if m in MODULES or m.startswith("numba.cuda")}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name):
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in BACKENDS + ("_core",):
        return parts[1]
    return "tool" if name in TOOLS else "public"


def test_the_layers_are_found():
    layers = {_layer(name) for name in MODULES}
    assert {"public", "_core", "_cpu", "_cuda", "tool"} <= layers
    assert "cosim_np.sliding" in GRAPH and "cosim_np._core.sliding" in GRAPH["cosim_np.sliding"]
    # relative imports resolve: _cuda/sliding.py reads the core's plans
    assert "cosim_np._core.sliding" in GRAPH["cosim_np._cuda.sliding"]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _layer(n) != "public" and _layer(n) != "tool"))
def test_no_layer_below_the_public_modules_imports_them(name):
    upward = {m for m in GRAPH[name] if m in MODULES and _layer(m) in ("public", "tool")}
    assert not upward, f"{name} imports {sorted(upward)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _layer(n) in BACKENDS + ("_core",)))
def test_a_backend_imports_only_the_core_and_itself(name):
    allowed = {"_core", _layer(name)}
    wrong = {m for m in GRAPH[name] if m in MODULES and _layer(m) not in allowed}
    assert not wrong, f"{name} imports {sorted(wrong)}"


def test_only_the_cuda_backend_imports_numba_cuda():
    users = {name for name, imported in GRAPH.items()
             if any(m.startswith("numba.cuda") for m in imported)}
    assert users and all(_layer(name) == "_cuda" for name in users), users


def _cycle(graph):
    """An import cycle of ``graph`` as a list of modules, or None."""
    state = {}

    def visit(name, path):
        state[name] = "open"
        for nxt in sorted(m for m in graph.get(name, ()) if m in MODULES):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_catch_what_they_guard():
    """The rules above see a violation: the CUDA backend's old import of a
    public module, and the old cycle through the dispatcher."""
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["cosim_np._cuda.sliding"].add("cosim_np.sliding")
    assert {m for m in graph["cosim_np._cuda.sliding"] if _layer(m) == "public"} == {"cosim_np.sliding"}
    graph["cosim_np._backend"].add("cosim_np._cuda")
    assert _cycle(graph) is not None
