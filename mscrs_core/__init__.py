"""MSCRS (SIGIR '25) reimplemented as a library behind an executable research book."""
__version__ = "0.1.0"
