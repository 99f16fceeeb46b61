"""Tasks, written once over any Runtime: tokenization policy, batching, pooling, top-k, decoding.

One module per task; each exposes a function ``task(runtime, ...)``. ``Runtime`` offers them as
methods (``rt.fill_mask(...)`` calls ``tasks.fill_mask.fill_mask(rt, ...)``), and
``registry.TASKS`` lists them for the CLI and the batch engines. A new task is one module here and
one row in ``registry.TASKS``; backends do not change.
"""
