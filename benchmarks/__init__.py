"""Benchmarks: each module is a script that prints and saves figures (results/*.json); a
package so that tests import them from the repository root (``from benchmarks import ...``)."""
