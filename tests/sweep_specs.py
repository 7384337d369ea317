"""Sweep specifications the sweep tests share."""

# Two eval points and two run points on the smallest shipped model (int8 weights: a run
# point the two-digit accelerator refuses, recorded as failed).
TINY = """\
[axes]
models = ["mnist_lenet"]
limit = 20
schemes = ["asd2", "int8"]

[measures.eval]

[measures.run]
calib = 8
"""
