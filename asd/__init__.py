"""Number systems and model-level quantization (numpy only).

Owns: canonical signed digits (CSD), approximate signed digits (ASD), the baselines
(power-of-two, uniform integer, ShiftCNN), minifloat formats, scale choice, packing codes to
bytes with exact size accounting, model I/O and accuracy evaluation.  Imports only `contract`
(whose `hwcode` is the two-digit weight code the accelerator consumes).
"""
