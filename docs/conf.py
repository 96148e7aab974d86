"""Sphinx configuration for the skcrosstune documentation.

Build with ``make html`` from this folder (``make html-noplot`` skips running
the gallery). Everything works offline: links to other projects' docs
(intersphinx) are only fetched when ``SKCROSSTUNE_DOCS_INTERSPHINX=1``.
"""

import os
from datetime import date

# The gallery examples run during the build; never reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import skcrosstune  # noqa: E402

# -- Project -----------------------------------------------------------------
project = "skcrosstune"
author = "The skcrosstune developers"
copyright = f"{date.today().year}, {author}"
release = skcrosstune.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "examples", "auto_examples/*.ipynb", "auto_examples/*.py"]
default_role = "literal"
pygments_style = "sphinx"

# -- API reference: autodoc, autosummary, numpydoc -------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc sections already give the types
autodoc_member_order = "groupwise"
numpydoc_show_class_members = False  # the class template lists the methods
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- Links to other projects (needs the network, so opt-in) ---------------------
if os.environ.get("SKCROSSTUNE_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "sklearn": ("https://scikit-learn.org/stable/", None),
    }

# -- Gallery -------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "sphinx_gallery.sorting.FileNameSortKey",
    "doc_module": ("skcrosstune",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skcrosstune": None},
    "remove_config_comments": True,
    "abort_on_example_error": True,
}

# -- HTML ----------------------------------------------------------------------
# pydata-sphinx-theme when installed, else the theme that ships with Sphinx.
try:
    import pydata_sphinx_theme  # noqa: F401
except ImportError:
    html_theme = "alabaster"
    html_theme_options = {"description": "Few-shot text classification on black-box language models"}
else:
    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_with_keys": False,
        "show_toc_level": 2,
        "secondary_sidebar_items": ["page-toc"],
    }
html_title = f"skcrosstune {release}"
html_show_sourcelink = False


def _skip_metadata_routing(app, what, name, obj, skip, options):
    """Leave out the generated ``set_*_request`` methods: their docstrings link into scikit-learn's guide."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    """Register the project's Sphinx hooks."""
    app.connect("autodoc-skip-member", _skip_metadata_routing)
