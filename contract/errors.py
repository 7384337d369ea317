"""One base class for every error the toolkit raises on purpose.

A caller (the ``asd`` command, a notebook, a sweep worker) catches :class:`AsdError` to tell a
refused input or a failed tool run from a bug: anything else that escapes is a defect.  Each
subclass also keeps the builtin base it always had (``ValueError`` for bad input,
``RuntimeError`` for a failed run), so existing ``except ValueError`` code still works.
"""

from __future__ import annotations


class AsdError(Exception):
    """Base of every deliberate error: bad input, a program fault, a tool that failed."""


__all__ = ["AsdError"]
