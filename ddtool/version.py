"""ddtool's version: one place, read by pyproject (setuptools' ``attr:``), ``ddtool.__version__``,
the run records and ``ddtool --version``. A module of its own so any layer may read it without
importing the package's lazy facade (``ddtool/__init__.py``)."""

__version__ = "0.1.0"
