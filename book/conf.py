"""Sphinx configuration of the course book.

Not built from here directly: ``scripts/build_book.py`` copies this folder into ``build/book-src/``
next to the executed notebooks, the worked solutions, MathJax and the generated pages, and runs
``sphinx-build -W --keep-going`` there (``bash scripts/main.sh`` does both after executing).
"""

project = "cvxattn: attention through convex duality"
author = "the cvxattn authors"
copyright = "the cvxattn authors, MIT licence"

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_repo", "_generated", "_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# MyST: $...$ and $$...$$ math as in the notebooks; "```{include}" pulls pages of the repository in
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
myst_dmath_double_inline = True  # "text:\n$$...$$" inside a paragraph is display math, as in JupyterLab

# MyST-NB: the notebooks were executed by scripts/execute_notebooks.py; never execute them again
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no widget manager from a CDN; build_book.py replaces widget outputs
nb_merge_streams = True

# Math renders offline: MathJax 3 from the npm registry, copied into _static/mathjax/ by
# build_book.py (a relative mathjax_path is relative to _static)
mathjax_path = "mathjax/tex-mml-chtml.js"

html_theme = "sphinx_book_theme"
html_title = "Attention through convex duality"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_css_files = ["book.css"]
html_last_updated_fmt = None
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
}
html_show_sourcelink = False
html_context = {"default_mode": "auto"}  # light or dark as the reader's system prefers
