"""One module per benchmark (bench-NAME in the Makefile runs NAME; NAME's module spells - as _).

Each has NAME, KEYS (the metric keys it reports; null when it fails), DESCRIPTION and
`run(ctx) -> Result`; common.py holds what several share, and earful_dev.bench the broker,
PostgreSQL and webhook receiver context managers. bench/run.py runs them.
"""
