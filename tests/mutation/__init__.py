"""Targeted mutants of the engine, run on demand: ``python -m tests.mutation``.

Not collected by pytest (no ``test_`` module here): each mutant is applied to a
temporary copy of ``src/`` and the tests that must notice it run against that copy.
See `tests.mutation.run` and the mutant list in `tests.mutation.mutants`.
"""
