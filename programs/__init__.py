"""The compiler: quantized CNN graphs lowered to accelerator programs, memory planning, and a
network runtime over any `contract.backend.Backend` (the RTL ones found by name through the
registry, never imported).  Imports `contract`, `asd` and `emu`.

* `onnx_import` ONNX -> the `graph` IR (layers, shapes, fusions); `seednets` builds the seed
  networks (AlexNet, VGG-16, ResNet-18, SqueezeNet) as ONNX.
* `quantize` calibration and the integer parameters; `qnet` the quantized network they make
  (`QLayer`, `QNet`) and its persistence.
* `reference` the oracles: the integer network (bit-exact target) and the float network.
* Lowering, by responsibility: `lower` plans each layer's tiles (row bands, channel block
  groups) and is the entry point; `fit` holds the limits a tile must respect and the one
  helper that shrinks block groups until they fit; `codegen` writes each tile's assembly;
  `layout` says what each memory of a tile holds and builds its image; `levels` which tiles
  may run at once.  Expected cycles come from `contract.isa`.
* `manifest` the compiler driver and its output directory; `runtime` runs a compiled network
  layer by layer over a backend; `kernels` small hand-written program generators.
* The runtime's batch path, bit-exact with `reference` by proof: `batchint` (a layer's exact
  float products), `batchort` (onnxruntime sessions for them), `batchrequant` (the
  requantization in float).
"""
