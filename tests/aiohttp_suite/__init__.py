"""aiohttp's own client tests, run with every session they build being a ``ResilientSession``.

``sources`` fetches the test files of the installed aiohttp from its source distribution (cached
under ``.cache/aiohttp-tests/<version>/``), ``plugin`` is the pytest plugin loaded into the
subprocess that runs them, ``harness`` runs that subprocess and reads its outcomes.
``python -m tests.aiohttp_suite`` runs the three variants (plain aiohttp, ResilientSession with
retries off, ResilientSession with the defaults) and prints the differences.
"""
