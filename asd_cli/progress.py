"""Progress bars on stderr for long loops, by tqdm: count, rate and time left; quiet when
stderr is not a terminal (logs and pipes stay clean) or when the caller asks for quiet."""

from __future__ import annotations

import sys

from tqdm import tqdm


def bar(label: str, total: int, *, quiet: bool = False, unit: str = "image") -> tqdm:
    """A bar for ``total`` steps; use it as a context manager so it is closed on every path."""
    return tqdm(total=total, desc=label, unit=unit, file=sys.stderr, mininterval=0.2,
                dynamic_ncols=True, disable=True if quiet else None)
