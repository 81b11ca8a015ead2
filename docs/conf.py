"""Sphinx configuration for cosim_np."""

import cosim_np

project = "cosim_np"
author = "cosim_np developers"
release = version = cosim_np.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
]
autosummary_generate = True
# cosim_np.torch is documented without PyTorch installed (it is never a dependency)
autodoc_mock_imports = ["torch"]
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
intersphinx_mapping = {}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
