"""The contract every part of the toolkit is held to; imports only numpy, bitstring, tomli-w.

Owns: the one ISA table (`isa`), the accelerator configuration (`config`), the two-digit weight
code (`hwcode`), the versioned program image (`image`), the integer semantics (`semantics`),
the error base class (`errors`), the backend protocol with its result type and registry
(`backend`), the static timing of a program (`timing`), and one BLAS thread for small products
(`blas`).  `asd`, `emu`, `programs` and
`accel` import it; it imports none of them.
"""
