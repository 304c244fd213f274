"""MSCRS (SIGIR '25) reimplemented as a library behind an executable research book."""
__version__ = "0.1.0"

import warnings as _warnings

# tqdm.auto inside a Jupyter kernel without ipywidgets warns once per import; the bars fall back to text.
_warnings.filterwarnings("ignore", message="IProgress not found")
