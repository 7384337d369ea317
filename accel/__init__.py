"""The MyHDL cycle-accurate core, HDL export, simulator backends and synthesis reports.
Imports `emu` for the ISA table, configuration and program image only.
"""
