"""The contract every part of the toolkit is held to; imports only numpy, bitstring, tomli-w.

Owns: the one ISA table with each instruction's operand roles, cycles and the static timing
derived from them (`isa`), the accelerator configuration (`config`), the two-digit weight code
(`hwcode`), the versioned program image (`image`), the integer semantics (`semantics`), the
error base class (`errors`), the backend protocol with its result type and registry
(`backend`), and one BLAS thread for small products (`blas`).  `asd`, `emu`, `programs` and
`accel` import it; it imports none of them.
"""
