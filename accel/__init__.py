"""The MyHDL cycle-accurate core, HDL export, simulator backends and synthesis reports.
Imports `contract` (ISA table, configuration, weight code, image, semantics); the emulator
only as the `emu` backend.

``accel.backends.run(image, backend)`` runs an image on ``myhdl``, ``icarus``, ``ghdl`` or
``verilator`` (or the ``emu`` emulator); ``accel.export`` writes the core as Verilog or VHDL
with a self-checking testbench; ``accel.hwreport`` measures both PE kinds on iCE40
(``accel.synth``), as generic gates with a toggle power proxy (``accel.power``) and on
standard cells with OpenSTA (``accel.asic``).
"""
