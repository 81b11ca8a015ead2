"""What ``--doctest-modules`` imports: the modules that import an optional
dependency at their top (the Dask backend, the xarray wrappers, the PyTorch
adapter) are left out where it is not installed, so that a partial
environment (a GPU machine without Dask, say) can still run
``python -m pytest -m cuda``.  The test extra installs all of them, so CI
collects every module."""

import importlib.util

_NEEDS = {"cosim_np/_dask/*.py": "dask", "cosim_np/_xarray.py": "xarray",
          "cosim_np/torch.py": "torch"}

collect_ignore_glob = [path for path, module in _NEEDS.items()
                       if importlib.util.find_spec(module) is None]
