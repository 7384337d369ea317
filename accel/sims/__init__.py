"""The simulator backends, one module each, every one a :class:`contract.backend.Backend`
registered by name in :mod:`contract.backend`: ``myhdl_sim`` (MyHDL's own simulator),
``icarus`` (with its co-simulation child ``icarus_cosim``), ``ghdl`` and ``verilator``;
``common`` holds what they share."""
