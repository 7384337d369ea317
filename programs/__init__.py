"""The compiler: quantized CNN graphs lowered to accelerator programs, memory planning, and a
network runtime over any backend.  Imports `contract`, `asd` and `emu`.
"""
