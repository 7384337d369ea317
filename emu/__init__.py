"""The golden model of the accelerator, built on `contract`.

Owns: the assembler and disassembler (`asm`), the golden emulator in step and fast mode
(`emulator`, `fast`) and the generated ISA reference (`isadoc`).  Imports only `contract`.
"""
