"""The backends layer: one folder per backend (its rows, export, runtime and model/layout code),
the shared bases every folder may use (``base.Runtime``, ``converter.Converter``, ``heads``), the
catalog that assembles the folders' rows (``catalog``) and the one loader and gate (``loading``).
Backend folders never import each other.
"""
