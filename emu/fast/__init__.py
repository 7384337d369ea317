"""Fast mode: whole loop nests executed as numpy array operations, bit-identical to step mode.

Why this is possible at all: control flow is static (LOOP counts are immediates, there are no
branches) and the address registers only change through SETI, ADDI and constant
post-increments.  So every loop's trip count, every register value, every address and every
counter is fixed before any data is looked at; only AMEM, the accumulators, W and P carry data.

How it works.  The step interpreter (:class:`emu.machine.Machine`) drives the run.  When it
reaches a LOOP, the loop nest is parsed (with the same structural checks step mode makes) and
executed over a batch of *instances*: one instance per iteration, each with its own registers,
accumulators, W and P, executing the body instruction by instruction across all instances at
once.  An iteration's starting registers come from the body's register transfer function
(affine with copies) by repeated doubling.  A nested loop becomes more instances when its
iterations do not depend on each other through A, W or P (each is either killed before it is
read, only read, or, for A, only added to: modular sums can be summed in any order); otherwise its
iterations run one after another over the batch.  A loop whose body is a single MAC is a dot
product and becomes a matrix product (float32 when every partial sum is provably below 2^24,
float64 below 2^53, int64 otherwise: its wrap modulo 2^64 keeps the accumulator's low bits).

Sibling MAC loops are fused: a run of a body's items made only of MAC-only loops and
SETI/ADDI/NOP (a convolution window: one MAC loop per kernel row, a register step between
them) adds one sum of dot products to A and leaves W and P from its last MAC.  The run's
register transfer gives every loop's start addresses as (one register + a constant), so the
instances factor into (distinct windows) x (distinct weight runs), and the run is ONE matrix
product of gathered windows (a strided view of AMEM when all runs have one length and step)
by the weights, as im2col does.  Runs that do not fit (addresses that wrap past 2^16 or leave
memory, windows hanging off two registers, instances that do not factor) execute item by item.
Facts about the text (parsed nests, runs, transfer compositions) are cached per program text, so
the tiles of one layer analyse it once; tables derived from BMEM (REQ multipliers) are kept for
the run, since no instruction writes that memory.  A batch runs its products with BLAS limited
to one thread (threadpoolctl, when installed): they are small, and waking or spinning worker
threads costs more than they give (see contract.blas; measured on the loaded 2-core machine,
a 560x576 by 6x576x64 stack took 1.8 ms on one thread and 64 ms on two).

Several images with one text run in lockstep (:func:`run_fast_many`, a layer's tiles): control
flow, registers, addresses, counters and faults never depend on data, so their machines take
the same steps and batches.  Memories are stacked (tiles, depth) and the data of a batch (A, W,
P, products) carries a leading tile axis while registers and addresses stay one set; the
commit rule, checked on addresses, holds for all tiles or none.  Instructions that touch no
data step the first machine only, and a batch's lane registers stay stacked: the other
machines are made, and get the first one's control state and their lanes, only when step mode
next touches data (a layer whose programs step no data never makes them: their results at
HALT are the first one's control state with their own memories and lanes).  Gathers from the
stacked memories go through np.take (``state.cols``): numpy's fancy indexing behind a leading
slice was 20-40x slower on a thousand tiles.  Tiles whose read region holds the same
activations (the channel blocks of one row band) share the gathered windows and are one
matrix product, their weights side by side in its columns.  A tile's input bands may come
apart from its image (``run_fast_many(bands=...)``): each is placed straight into the stacked
AMEM, once for all the tiles that place it; tiles that placed the same arrays in a region are
known equal there where no store has reached since, and only one of each is compared.  A
fault is raised by the first machine, as the first image alone would raise it.

Memory ordering is made irrelevant rather than reproduced: a batch keeps its stores aside and
writes them at commit, which it does only if no address is written twice and no address it
reads is written (checked on sorted write runs, or
on a bitmap of AMEM when the runs differ in width).  Anything the batch cannot prove
(a fault, a conflict, HALT in a body, a cycle limit inside the nest) makes it give up without
side effects, and step mode executes the LOOP instruction itself, so errors are step mode's
own, with the same pc.  Loops that would cross the cycle limit are batched for as many whole
iterations as fit, then stepped.

Address work is done once: a batch that commits keeps what it worked out from registers
alone (instance registers, checked addresses, product shapes, the commit verdict, where its
stores go, its counters), and the next batch starting from the same LOOP, text, registers,
iteration count and number of tiles (a layer's tiles on the next image) takes it back
instead (``plan``); only the data is computed again.

Work no result needs is left out, provably: W and P after a product are made only if read
(the next window overwrites them; only a loop's last instance reaches the machine), and bounds
known on A (zero, a BMEM word, the activation range after VLD, VMAX or REQ, plus a product's
reach) skip the wraps that cannot change it.  Weights decoded to integers are kept across
runs while their image's arrays live (``prepacked``), as onnxruntime prepacks a session's.

Layers, bottom up: ``prepacked`` (decoded weights kept across runs), ``plan`` (address work
kept across runs), ``placement`` (what tiles place in AMEM, and the equal regions that
tells), ``transfer`` (register transfer algebra), ``nest`` (parsed loop nests, iteration
independence and fusable runs, from the ISA table's roles), ``state`` (the typed instance
state and what a batch reads and records), ``products`` (dot-product loops and fused windows
as matrix products), ``order`` (the commit rule), ``batch`` (instruction semantics over
instances), ``runner`` (the driver).
"""

from __future__ import annotations

from .runner import FastRunner, run_fast, run_fast_many
from .state import Bands

__all__ = ["run_fast", "run_fast_many", "FastRunner", "Bands"]
