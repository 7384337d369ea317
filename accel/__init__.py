"""The MyHDL cycle-accurate core, HDL export, simulator backends and synthesis reports.
Imports `contract` (ISA table, configuration, weight code, image, semantics, backend
protocol); `emu` only for the exported testbench's demo program and the power proxy's
activity.

``accel.sims`` holds the simulator backends ``myhdl``, ``icarus``, ``ghdl`` and ``verilator``,
each a ``contract.backend.Backend`` that ``contract.backend.get_backend(name)`` finds by name;
``accel.export`` writes the core as Verilog or VHDL with a self-checking testbench;
``accel.hwreport`` measures both PE kinds on iCE40 (``accel.synth``), as generic gates with a
toggle power proxy (``accel.power``) and on standard cells with OpenSTA (``accel.asic``).

The RTL, bottom up:

* ``hdl``: HDL primitives (signal constructors, mux chains and trees, slices, sign
  extension, small registers) and ``fast_elaboration``;
* ``arith``: full-adder rows, block carry-save accumulators and adders, compressor tree;
* ``pe``: the processing element of each kind (shift-add, multiplier), weight decode;
* ``control``, ``core_lane`` and ``core``: the control table derived from the ISA roles, the
  core's lane, and the core (decode, address registers, loop stack, memory ports);
* ``lanes``, ``readouts``, ``pe_array``: the PE array ``hwreport`` synthesizes, with the
  registry of its modes (``lanes.LANE_MODES``);
* ``designs``: the synthesized designs as Verilog files with their scan wrapper.
"""
