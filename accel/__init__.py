"""The MyHDL cycle-accurate core, HDL export, simulator backends and synthesis reports.
Imports `contract` (ISA table, configuration, weight code, image, semantics); the emulator
only as the `emu` backend.

``accel.backends.run(image, backend)`` runs an image on ``myhdl``, ``icarus``, ``ghdl`` or
``verilator`` (or the ``emu`` emulator); ``accel.export`` writes the core as Verilog or VHDL
with a self-checking testbench; ``accel.hwreport`` measures both PE kinds on iCE40
(``accel.synth``), as generic gates with a toggle power proxy (``accel.power``) and on
standard cells with OpenSTA (``accel.asic``).

The RTL, bottom up:

* ``hdl``: HDL primitives (signal constructors, mux chains and trees, slices, sign
  extension, small registers) and ``fast_elaboration``;
* ``arith``: full-adder rows, block carry-save accumulators and adders, compressor tree;
* ``pe``: the processing element of each kind (shift-add, multiplier), weight decode;
* ``core_lane`` and ``core``: the core's lane, and the core (decode, control, address
  registers, loop stack, memory ports);
* ``lanes``, ``readouts``, ``pe_array``: the PE array ``hwreport`` synthesizes, with the
  registry of its modes (``lanes.LANE_MODES``);
* ``designs``: the synthesized designs as Verilog files with their scan wrapper.
"""
