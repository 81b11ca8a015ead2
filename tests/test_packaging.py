"""The README's commands are what CI runs, and packaging follows the rules."""

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    test_command = next(block for block in blocks if "pytest" in block)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_pyproject_holds_the_build_system_and_tool_settings():
    text = (ROOT / "pyproject.toml").read_text()
    tables = re.findall(r"^\[([^\]]+)\]", text, flags=re.M)
    assert tables[0] == "build-system"
    assert all(table.startswith("tool.ruff") for table in tables[1:])


def test_ci_runs_ruff_on_the_whole_tree():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "ruff check" in ci


def test_setup_cfg_dependencies_and_extras():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    requires = config["options"]["install_requires"].split()
    assert {re.split(r"[<>=]", r)[0] for r in requires} == {"numpy", "numba", "scipy",
                                                             "threadpoolctl"}
    extras = set(config["options.extras_require"])
    assert {"test", "fft", "dask", "xarray", "plot", "docs", "bench"} <= extras


def test_the_declared_license_travels_with_the_package():
    """setup.cfg declared BSD-3-Clause with no license text in the tree or the
    wheel (an exploratory test); the license asks its notice to travel with
    the code."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["license"] == "BSD-3-Clause"
    text = (ROOT / config["metadata"]["license_files"].strip()).read_text()
    assert text.startswith("BSD 3-Clause License") and "Neither the name of" in text


def test_imports_and_runs_with_docstrings_stripped():
    # python -OO sets every __doc__ to None; filling in shared docstring parts
    # must not fail then
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    code = ("import numpy as np, cosim_np; "
            "assert cosim_np.sliding_cosine.__doc__ is None; "
            "print(cosim_np.sliding_cosine(np.arange(5.0), np.ones(2)).size)")
    done = subprocess.run([sys.executable, "-OO", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"


def test_import_and_one_axis_calls_leave_the_process_environment_alone():
    """threadpoolctl sets KMP_DUPLICATE_LIB_OK (Intel OpenMP's check for a
    second runtime) for the whole process when imported: only the calls that
    limit BLAS threads import it, and no optional library is imported."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env.pop("KMP_DUPLICATE_LIB_OK", None)
    code = ("import os, sys, numpy as np, cosim_np\n"
            "cosim_np.sliding_cosine(np.arange(50.0), np.ones(3))\n"
            "cosim_np.cosine_similarity(np.ones((2, 3)), np.ones(3))\n"
            "print(os.environ.get('KMP_DUPLICATE_LIB_OK'), sorted(name for name in ('threadpoolctl',"
            " 'matplotlib', 'torch', 'dask', 'xarray', 'pandas', 'numba.cuda') if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None []"


def test_a_skipped_test_fails_the_run_on_ci(tmp_path):
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_one.py").write_text(
        "import pytest\n\ndef test_runs():\n    pass\n\n"
        "def test_skips():\n    pytest.skip('not here')\n")
    env = dict(os.environ, CI="true")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stdout
    assert "nothing may skip in CI" in done.stdout
    env["CI"] = ""
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_test_extra_installs_what_the_cross_checks_need():
    # the README's test command alone must run every test: nothing skipped
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    test = {re.split(r"[<>=;\s]", r)[0] for r in config["options.extras_require"]["test"].split("\n")
            if r and not r.startswith("#")}
    assert {"pytest", "hypothesis", "ducc0", "torch", "ruff", "opencv-python-headless", "stumpy",
            "scikit-image"} <= test


def test_the_sdist_carries_the_tests_and_what_they_import(tmp_path):
    """setuptools put ``tests/test_*.py`` in the sdist but not what they
    import (``naive.py``, ``strategies.py``, the conftests, the benchmark
    corpus): an unpacked sdist's tests failed to collect (an exploratory
    test).  MANIFEST.in adds them."""
    import shutil
    import tarfile

    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", "venv", "*.egg-info", "__pycache__", "_build", "build", "dist", ".hypothesis"))
    done = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q",
                           "sdist", "--dist-dir", str(tmp_path / "dist")], cwd=tree,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with tarfile.open(next((tmp_path / "dist").glob("*.tar.gz"))) as sdist:
        names = sdist.getnames()
    for needed in ("tests/__init__.py", "tests/naive.py", "tests/strategies.py", "tests/memory.py",
                   "tests/conftest.py", "conftest.py", "benchmarks/corpus.py"):
        assert any(name.endswith("/" + needed) for name in names), needed
