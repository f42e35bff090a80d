"""mergegate's coverage hook: start coverage in every Python process of a test run.

This directory is put first on ``PYTHONPATH`` for the test command, so Python imports
this module at start-up in the test runner and in every subprocess it spawns, whatever
the command is (``pytest``, ``tox``-less scripts, ``make test``). Coverage's documented
subprocess mechanism does the rest: ``coverage.process_startup()`` starts measuring
when ``COVERAGE_PROCESS_START`` names a config file, and does nothing otherwise (or
when coverage was already started, e.g. by coverage's own ``.pth`` file).
"""

import os

if os.environ.get("COVERAGE_PROCESS_START"):
    try:
        import coverage
    except ImportError:  # the environment lacks coverage: the report says data is missing
        pass
    else:
        coverage.process_startup()
