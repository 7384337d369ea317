"""The golden model of the accelerator, built on `contract`.

Owns: the assembler and disassembler (`asm`), the golden emulator (`emulator.run`) in step
mode (`machine`) and fast mode (`fast`, a package of layers), the emulator as the registry's
``emu`` backend (`backend`), and the generated ISA reference (`isadoc`).  Imports only
`contract`; `machine` imports neither `fast` nor `emulator`.
"""
