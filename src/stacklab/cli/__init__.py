"""The ``stacklab`` command line: see :mod:`stacklab.cli.main` (entry point ``main``).

Importing this package is cheap: it imports neither the commands nor any domain.
"""
