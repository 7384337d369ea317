"""The golden model of the accelerator, built on `contract`.

Owns: the assembler and disassembler (`asm`), the golden emulator in step and fast mode
(`emulator`, `fast`), the emulator as the registry's ``emu`` backend (`backend`) and the
generated ISA reference (`isadoc`).  Imports only `contract`.
"""
