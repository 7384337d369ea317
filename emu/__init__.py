"""The accelerator's contract and its golden model.

Owns: the one ISA table (`isa`), the accelerator configuration (`config`), the program image
(`image`), the assembler and disassembler (`asm`), the integer semantics (`semantics`) and the
golden emulator (`emulator`).  Imports only `asd`.
"""
