"""The compiler: quantized CNN graphs lowered to accelerator programs, memory planning, and a
network runtime over any `contract.backend.Backend` (the RTL ones found by name through the
registry, never imported).  Imports `contract`, `asd` and `emu`.
"""
