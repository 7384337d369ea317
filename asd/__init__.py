"""Number systems and model-level quantization (numpy only).

Owns: canonical signed digits (CSD), approximate signed digits (ASD), the baselines
(power-of-two, uniform integer, ShiftCNN), minifloat formats, scale choice, packing codes to
bytes with exact size accounting, model I/O, error-compensating rounding (bias correction,
GPTQ-style second-order rounding from calibration data) and evaluation (accuracy and fidelity
to float: output SQNR, softmax KL, top-1 agreement, per-layer SQNR).  Imports only `contract`
(whose `hwcode` is the two-digit weight code the accelerator consumes); onnx and onnxruntime
on demand.
"""
