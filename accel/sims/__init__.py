"""Per-simulator drivers behind :func:`accel.backends.run`."""
