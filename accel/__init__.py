"""The MyHDL cycle-accurate core, HDL export, simulator backends and synthesis reports.
Imports `contract` (ISA table, configuration, weight code, image, semantics, backend
protocol); `emu` only for the exported testbench's demo program and the power proxy's
activity.

``accel.sims`` holds the simulator backends ``myhdl``, ``icarus``, ``ghdl`` and ``verilator``,
each a ``contract.backend.Backend`` that ``contract.backend.get_backend(name)`` finds by name;
``accel.export`` writes the core as Verilog or VHDL with a self-checking testbench;
``accel.hwreport`` measures both PE kinds on iCE40 (``accel.synth``), as generic gates with a
toggle power proxy (``accel.power``) and on standard cells with OpenSTA (``accel.asic``).
"""
