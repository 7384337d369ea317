"""The ``asd`` command: the one place that glues the packages together.

Each subcommand lives in its own module here and exposes ``register(subparsers)``; the packages
it calls (`asd`, `emu`, `programs`, `accel`) are imported lazily so ``asd --help`` stays fast.
"""
