"""The verification layer, written once and used by convert, the parity matrix, the benchmark,
deployment bundles and the release: probe inputs (``probes``), the comparisons and their figures
(``metrics``, ``compare``), the gate a conversion must pass (``gate``), the parity matrix
(``parity``) and the reports (``report``). Imports the backends layer and below.
"""
