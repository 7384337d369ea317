"""The instruction set: ONE table, the source of every instruction's encoding and semantics.

The assembler, disassembler, emulator decoder, the RTL's opcode constants and ``docs/isa.md``
are all derived from :data:`INSTRUCTIONS`.  Every instruction is one 32-bit word: the opcode in
the top :data:`OPCODE_BITS` bits, then the fields in table order, most significant first; the
remaining low bits are reserved and must be zero.

Machine state (widths from :class:`contract.config.AccelConfig`):

* ``R[0..7]``   address registers, 16 bits, wrap modulo 2^16
* ``W[lane]``   weight register: one two-digit code per lane (see :mod:`contract.hwcode`)
* ``P[lane]``   product register: the last shift-add result per lane
* ``A[lane]``   accumulators, ``acc_bits`` two's complement, wrap on overflow
* a loop stack of ``loop_depth`` entries; ``pc`` counts instruction words
* memories ``IMEM`` (instructions), ``WMEM`` (a code per lane per word), ``BMEM`` (an
  ``acc_bits`` value per lane per word), ``AMEM`` (one ``act_bits`` element per address)

``sa(x, c)`` is the shift-add product of :func:`contract.semantics.shift_add`; ``rnd(t, s)`` the
rounding shift of :func:`contract.semantics.round_shift`; ``sat`` saturates to the activation range.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import AsdError

WORD_BITS = 32
OPCODE_BITS = 5
NUM_REGS = 8
REG_BITS = 16
REG_MASK = (1 << REG_BITS) - 1
LANES_FIELD = "n"  # the field of an instruction that serves lanes 0..n-1, one per cycle

FieldKind = Literal["reg", "uimm", "simm"]
Memory = Literal["WMEM", "AMEM", "BMEM"]
State = Literal["A", "W", "P", "R"]
# How an instruction touches a lane register (A, W or P): ``reads`` it, ``sets`` it without
# reading it, ``adds`` to it modulo its width (sums commute, so the fast path may reorder
# them), or ``updates`` it from its own value in any other way.
Access = Literal["reads", "sets", "adds", "updates"]
# What happens to the pc: the next instruction, stop, or a loop over the following body.
Flow = Literal["next", "halt", "loop"]
Cycles = Literal["1", "n"]


@dataclass(frozen=True)
class Field:
    """One operand field.  ``kind`` is ``reg`` (register index), ``uimm`` or ``simm``."""

    name: str
    width: int
    kind: FieldKind
    doc: str

    @property
    def lo(self) -> int:
        return 0 if self.kind != "simm" else -(1 << (self.width - 1))

    @property
    def hi(self) -> int:
        if self.kind == "reg":
            return NUM_REGS - 1
        return (1 << self.width) - 1 if self.kind == "uimm" else (1 << (self.width - 1)) - 1


@dataclass(frozen=True)
class Pointer:
    """A register field that addresses a memory, then moves by an increment field.

    ``per_lane``: lane i uses address ``R + i`` for the instruction's ``n`` lanes (an AMEM
    element each); otherwise the register addresses one word (WMEM, BMEM) or element.
    """

    register: str
    memory: Memory
    increment: str
    writes: bool = False
    per_lane: bool = False


@dataclass(frozen=True)
class RegWrite:
    """``R[dest] = (R[source] + addend) mod 2^16``, or ``= addend`` when there is no source."""

    dest: str
    source: str | None
    addend: str


# One register effect as the emulators apply it: (destination register, source register or -1
# for a constant, addend).
RegEffect = tuple[int, int, int]


@dataclass(frozen=True)
class Instr:
    """One instruction: mnemonic, opcode, fields, one-line action, notes, and its roles.

    ``cycles`` is ``"1"`` or ``"n"`` (the instruction's ``n`` field: one cycle per lane served).
    The roles say what the instruction touches, so that the emulators, the RTL control, the
    docs and the test strategies read them instead of switching on mnemonics: ``pointers``
    (memory accesses with their post-increments, in the order they are checked and applied),
    ``reg_write`` (a register set by SETI/ADDI), ``lane_state`` (how it touches A, W and P, in
    that order), ``shift_adds`` (one shift-add per lane served) and ``flow``.
    """

    mnemonic: str
    opcode: int
    fields: tuple[Field, ...]
    action: str
    notes: str
    cycles: Cycles = "1"
    pointers: tuple[Pointer, ...] = ()
    reg_write: RegWrite | None = None
    lane_state: tuple[tuple[State, Access], ...] = ()
    shift_adds: bool = False
    flow: Flow = "next"

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def used_bits(self) -> int:
        return OPCODE_BITS + sum(f.width for f in self.fields)

    @property
    def serves_lanes(self) -> bool:
        """Does the instruction serve only lanes ``0..n-1`` (its ``n`` field)?"""
        return any(f.name == LANES_FIELD for f in self.fields)

    def access(self, state: State) -> Access | None:
        """How the instruction touches ``state`` (A, W, P or R), or None."""
        if state == "R":
            if self.reg_write is not None:
                return "sets" if self.reg_write.source is None else "updates"
            return "updates" if self.pointers else None
        return dict(self.lane_state).get(state)

    @property
    def reads(self) -> frozenset[State]:
        return frozenset(s for s in _STATES if self.access(s) in ("reads", "adds", "updates"))

    @property
    def writes(self) -> frozenset[State]:
        return frozenset(s for s in _STATES if self.access(s) in ("sets", "adds", "updates"))

    @property
    def register_only(self) -> bool:
        """Touches nothing but the address registers (and the pc moves on)."""
        return not self.pointers and not self.lane_state and self.flow == "next"

    @property
    def is_dot_step(self) -> bool:
        """One term of a dot product: loads W from WMEM, sets P from one AMEM element times W
        and adds it to every lane's A (MAC).  A loop of only these is a matrix product."""
        mems = sorted((p.memory, p.writes, p.per_lane) for p in self.pointers)
        return (mems == [("AMEM", False, False), ("WMEM", False, False)]
                and dict(self.lane_state) == {"A": "adds", "W": "sets", "P": "sets"})

    def pointer(self, memory: Memory) -> Pointer:
        for p in self.pointers:
            if p.memory == memory:
                return p
        raise KeyError(memory)


_STATES: tuple[State, ...] = ("A", "W", "P", "R")


def _reg(name: str, doc: str) -> Field:
    return Field(name, 3, "reg", doc)


def _ptr(register: str, memory: Memory, increment: str = "inc", *, writes: bool = False,
         per_lane: bool = False) -> tuple[Pointer, ...]:
    return (Pointer(register, memory, increment, writes, per_lane),)


_INC12 = Field("inc", 12, "simm", "post-increment added to the address register")
_N = Field("n", 6, "uimm", "lanes served, 1..lanes (one per cycle)")

REQ_SHIFT_BITS = 6  # width of the shift in a REQ parameter
REQ_SHIFT_MAX = (1 << REQ_SHIFT_BITS) - 1
_SHIFT_FIELD = f"(q >> code_bits) & {REQ_SHIFT_MAX}"
INSTRUCTIONS: tuple[Instr, ...] = (
    Instr("NOP", 0, (), "nothing", "Padding; also what an all-zero word decodes to."),
    Instr("HALT", 1, (), "stop; the cycle it takes is counted",
          "Every program ends with HALT; running past the text is an error.", flow="halt"),
    Instr("SETI", 2, (_reg("rd", "destination register"), Field("imm", 16, "uimm", "value")),
          "R[rd] = imm", "Sets an address register.", reg_write=RegWrite("rd", None, "imm")),
    Instr("ADDI", 3, (_reg("rd", "destination register"), _reg("rs", "source register"),
                      Field("imm", 16, "simm", "signed addend")),
          "R[rd] = (R[rs] + imm) mod 2^16",
          "Address stepping between loop levels; ADDI rd, rs, 0 copies a register.",
          reg_write=RegWrite("rd", "rs", "imm")),
    Instr("LOOP", 4, (Field("count", 16, "uimm", "iterations (0 skips the body)"),
                      Field("len", 10, "uimm", "body length in instructions, >= 1")),
          "run the next len instructions count times",
          "Zero-overhead: the jump back costs no cycle. A body must lie inside the enclosing "
          "body and must not end on the same instruction; nesting deeper than loop_depth is an "
          "error. In assembly `len` may be a label placed just after the body.", flow="loop"),
    Instr("LOADW", 5, (_reg("rw", "weight address register"), _INC12),
          "W[i] = WMEM[R[rw]][i]; R[rw] += inc", "Loads the codes of all lanes.",
          pointers=_ptr("rw", "WMEM"), lane_state=(("W", "sets"),)),
    Instr("SHIFTADD", 6, (_reg("rx", "activation address register"), _INC12),
          "x = AMEM[R[rx]]; P[i] = sa(x, W[i]); R[rx] += inc",
          "The broadcast activation times every lane's weight: two shifts and one add/subtract, "
          "signs folded in; no multiplier.",
          pointers=_ptr("rx", "AMEM"), lane_state=(("W", "reads"), ("P", "sets")),
          shift_adds=True),
    Instr("ACC", 7, (), "A[i] = wrap(A[i] + P[i])", "Accumulates the lane products.",
          lane_state=(("A", "adds"), ("P", "reads"))),
    Instr("MAC", 8, (_reg("rw", "weight address register"),
                     Field("iw", 8, "simm", "post-increment of rw"),
                     _reg("rx", "activation address register"),
                     Field("ix", 8, "simm", "post-increment of rx")),
          "W = WMEM[R[rw]]; P[i] = sa(AMEM[R[rx]], W[i]); A[i] = wrap(A[i] + P[i]); "
          "R[rw] += iw; R[rx] += ix",
          "LOADW, SHIFTADD and ACC in one cycle: the inner loop of a convolution. If rw == rx "
          "both increments apply.",
          pointers=_ptr("rw", "WMEM", "iw") + _ptr("rx", "AMEM", "ix"),
          lane_state=(("A", "adds"), ("W", "sets"), ("P", "sets")), shift_adds=True),
    Instr("CLR", 9, (), "A[i] = 0", "Starts a sum with no bias.", lane_state=(("A", "sets"),)),
    Instr("BIAS", 10, (_reg("rb", "parameter address register"), _INC12),
          "A[i] = BMEM[R[rb]][i]; R[rb] += inc", "Starts a sum at the bias (accumulator scale).",
          pointers=_ptr("rb", "BMEM"), lane_state=(("A", "sets"),)),
    Instr("VLD", 11, (_reg("rx", "activation address register"), _N, _INC12),
          "A[i] = AMEM[R[rx] + i] for i < n; R[rx] += inc",
          "Lane i reads its own element (channel-innermost layout): max-pool start, copies.",
          "n", pointers=_ptr("rx", "AMEM", per_lane=True), lane_state=(("A", "sets"),)),
    Instr("VMAX", 12, (_reg("rx", "activation address register"), _N, _INC12),
          "A[i] = max(A[i], AMEM[R[rx] + i]) for i < n; R[rx] += inc", "Max pooling.", "n",
          pointers=_ptr("rx", "AMEM", per_lane=True), lane_state=(("A", "updates"),)),
    Instr("VMAC", 13, (_reg("rx", "activation address register"), _N, _INC12),
          "P[i] = sa(AMEM[R[rx] + i], W[i]); A[i] = wrap(A[i] + P[i]) for i < n; R[rx] += inc",
          "Per-lane activations: depthwise convolution, average pooling, scaled residual add.",
          "n", pointers=_ptr("rx", "AMEM", per_lane=True),
          lane_state=(("A", "adds"), ("W", "reads"), ("P", "sets")), shift_adds=True),
    Instr("REQ", 14, (_reg("rq", "parameter address register"), _INC12,
                      Field("relu", 1, "uimm", "1 clamps negatives to zero")),
          "q = BMEM[R[rq]][i]; A[i] = sat(rnd(sa(A[i], q.code), q.shift)), then max(A[i], 0) "
          "if relu; R[rq] += inc",
          "Requantization with no multiplier: the scale is itself a two-digit code. "
          f"q.code = q & (2^code_bits - 1), q.shift = {_SHIFT_FIELD}. Rounding adds half "
          "then shifts right arithmetically; the result saturates to the activation range.",
          pointers=_ptr("rq", "BMEM"), lane_state=(("A", "updates"),), shift_adds=True),
    Instr("ACT", 15, (_reg("rq", "parameter address register"), _INC12),
          "q = BMEM[R[rq]][i]; if A[i] < 0: A[i] = sat(rnd(sa(A[i], q.code), 2^E - 1)); "
          "R[rq] += inc",
          "LeakyReLU and PReLU: the negative slope per lane as a two-digit code (q.code as in "
          "REQ).",
          pointers=_ptr("rq", "BMEM"), lane_state=(("A", "updates"),), shift_adds=True),
    Instr("STORE", 16, (_reg("rx", "activation address register"), _N, _INC12),
          "AMEM[R[rx] + i] = A[i] mod 2^act_bits for i < n; R[rx] += inc",
          "Keeps the low act_bits bits (REQ first to saturate).", "n",
          pointers=_ptr("rx", "AMEM", writes=True, per_lane=True), lane_state=(("A", "reads"),)),
    Instr("SPILL", 17, (_reg("rx", "activation address register"), _N, _INC12),
          "AMEM[R[rx] + i] = A[i] mod 2^act_bits; A[i] = A[i] >> act_bits (arithmetic) for "
          "i < n; R[rx] += inc",
          "Saves a partial sum exactly, act_bits at a time from the low end: ceil(acc_bits / "
          "act_bits) SPILLs hold the whole accumulator (reduction tiling).", "n",
          pointers=_ptr("rx", "AMEM", writes=True, per_lane=True),
          lane_state=(("A", "updates"),)),
    Instr("FILL", 18, (_reg("rx", "activation address register"), _N, _INC12),
          "A[i] = wrap((A[i] << act_bits) + (AMEM[R[rx] + i] mod 2^act_bits)) for i < n; "
          "R[rx] += inc",
          "Restores a spilled partial sum: VLD of its top piece (signed), then FILL of the "
          "others from high to low.", "n", pointers=_ptr("rx", "AMEM", per_lane=True),
          lane_state=(("A", "updates"),)),
)

BY_MNEMONIC: dict[str, Instr] = {i.mnemonic: i for i in INSTRUCTIONS}
BY_OPCODE: dict[int, Instr] = {i.opcode: i for i in INSTRUCTIONS}
OPCODES: dict[str, int] = {i.mnemonic: i.opcode for i in INSTRUCTIONS}


def _check_table() -> None:
    seen: set[int] = set()
    for ins in INSTRUCTIONS:
        assert ins.opcode not in seen and 0 <= ins.opcode < (1 << OPCODE_BITS), ins
        seen.add(ins.opcode)
        assert ins.used_bits <= WORD_BITS, ins
        assert ins.cycles in ("1", "n"), ins
        assert (ins.cycles == "n") == ins.serves_lanes, ins
        names = {f.name: f for f in ins.fields}
        for p in ins.pointers:
            assert names[p.register].kind == "reg" and names[p.increment].kind == "simm", ins
            assert not p.per_lane or (ins.serves_lanes and p.memory == "AMEM"), ins
        if ins.reg_write is not None:
            w = ins.reg_write
            assert names[w.dest].kind == "reg" and names[w.addend].kind != "reg", ins
            assert w.source is None or names[w.source].kind == "reg", ins
        # Every register field has exactly one role: a pointer, or an operand of reg_write.
        roles = [p.register for p in ins.pointers]
        if ins.reg_write is not None:
            roles += [r for r in (ins.reg_write.dest, ins.reg_write.source) if r is not None]
        assert sorted(roles) == sorted(f.name for f in ins.fields if f.kind == "reg"), ins
        assert all(state != "R" for state, _ in ins.lane_state), ins


_check_table()

BY_FLOW: dict[Flow, Instr] = {i.flow: i for i in INSTRUCTIONS if i.flow != "next"}
LOOP = BY_FLOW["loop"]
HALT = BY_FLOW["halt"]


# Derived behaviour: what every backend reads instead of switching on mnemonics. -------------

def cycles_of(ins: Instr, values: dict[str, int]) -> int:
    """Cycles the instruction takes (n for a lane-serving instruction, otherwise 1)."""
    return values[LANES_FIELD] if ins.cycles == "n" else 1


def lanes_served(ins: Instr, values: dict[str, int], lanes: int) -> int:
    """Lanes the instruction acts on: its ``n`` field, or every lane."""
    return values[LANES_FIELD] if ins.serves_lanes else lanes


def register_effects(ins: Instr, values: dict[str, int]) -> tuple[RegEffect, ...]:
    """The instruction's register writes in order, as (destination, source or -1, addend).

    Post-increments read the register as it was written by the previous effect, so a MAC
    naming one register twice moves it by both increments.
    """
    out: list[RegEffect] = []
    w = ins.reg_write
    if w is not None:
        src = -1 if w.source is None else values[w.source]
        out.append((values[w.dest], src, values[w.addend]))
    for p in ins.pointers:
        r = values[p.register]
        out.append((r, r, values[p.increment]))
    return tuple(out)


def traffic_counter(p: Pointer) -> str:
    """The emulator counter a pointer's accesses add to (``amem_reads``, ``wmem_reads``...)."""
    return f"{p.memory.lower()}_{'writes' if p.writes else 'reads'}"


def traffic(ins: Instr, values: dict[str, int], lanes: int) -> dict[str, int]:
    """Counter increments of one execution: memory elements or words moved, shift-adds."""
    served = lanes_served(ins, values, lanes)
    out: dict[str, int] = {}
    for p in ins.pointers:
        key = traffic_counter(p)
        out[key] = out.get(key, 0) + (served if p.per_lane else 1)
    if ins.shift_adds:
        out["shift_adds"] = served
    return out


# Lowering limits, from the field widths: what the compiler may put in an instruction. ------
# The output pointer's step: the compiler moves it by whole blocks of lanes.
STORE_INC_MAX = BY_MNEMONIC["STORE"].field(BY_MNEMONIC["STORE"].pointer("AMEM").increment).hi
LOOP_COUNT_MAX = LOOP.field("count").hi
LOOP_LEN_MAX = LOOP.field("len").hi


class DecodeError(ValueError, AsdError):
    """A word that is not a valid instruction."""


def field_offsets(ins: Instr) -> list[tuple[Field, int]]:
    """Each field with the bit position of its least significant bit."""
    pos = WORD_BITS - OPCODE_BITS
    out = []
    for f in ins.fields:
        pos -= f.width
        out.append((f, pos))
    return out


def encode(mnemonic: str, **values: int) -> int:
    """The 32-bit word of one instruction; raises ``ValueError`` for a bad operand."""
    ins = BY_MNEMONIC[mnemonic]
    word = ins.opcode << (WORD_BITS - OPCODE_BITS)
    for f, lo in field_offsets(ins):
        v = values[f.name]
        if not f.lo <= v <= f.hi:
            raise ValueError(f"{mnemonic} {f.name}={v} out of range {f.lo}..{f.hi}")
        word |= (v & ((1 << f.width) - 1)) << lo
    extra = set(values) - {f.name for f in ins.fields}
    if extra:
        raise ValueError(f"{mnemonic} has no field {sorted(extra)[0]}")
    return word


def decode(word: int) -> tuple[Instr, dict[str, int]]:
    """The instruction and field values of one word; raises :class:`DecodeError`."""
    if not 0 <= word < (1 << WORD_BITS):
        raise DecodeError(f"word {word:#x} is not 32 bits")
    op = word >> (WORD_BITS - OPCODE_BITS)
    ins = BY_OPCODE.get(op)
    if ins is None:
        raise DecodeError(f"unknown opcode {op} in word {word:#010x}")
    values: dict[str, int] = {}
    for f, lo in field_offsets(ins):
        v = (word >> lo) & ((1 << f.width) - 1)
        if f.kind == "simm" and v >> (f.width - 1):
            v -= 1 << f.width
        values[f.name] = v
    reserved = WORD_BITS - ins.used_bits
    if reserved and word & ((1 << reserved) - 1):
        raise DecodeError(f"{ins.mnemonic} word {word:#010x} has reserved bits set")
    return ins, values


# Static timing, beside the table: programs have no data-dependent control flow. -----------
def timing_model() -> str:
    """The timing model in words, from the cycles column."""
    multi = [i.mnemonic for i in INSTRUCTIONS if i.cycles == "n"]
    listed = ", ".join(multi[:-1]) + " and " + multi[-1] if len(multi) > 1 else "".join(multi)
    return (f"Every instruction takes one cycle, except {listed}, which take `n` cycles (one "
            f"lane served per cycle). {LOOP.mnemonic} takes one cycle; the jump back at the end "
            f"of a body takes none. {HALT.mnemonic}'s cycle is counted.")


def static_cycles(words: Iterable[int]) -> int:
    """Cycles of a program from its text alone: the emulators' count for a run to HALT (a
    malformed program gives a number, not an error: only a run checks it)."""
    dec = [decode(int(w)) for w in words]

    def span(start: int, end: int) -> int:  # instructions [start, end]
        total, pc = 0, start
        while pc <= end:
            ins, f = dec[pc]
            if ins.flow == "loop":
                body_end = pc + f["len"]
                total += 1 + f["count"] * span(pc + 1, body_end)
                pc = body_end + 1
                continue
            total += cycles_of(ins, f)
            if ins.flow == "halt":
                break
            pc += 1
        return total

    return span(0, len(dec) - 1)
