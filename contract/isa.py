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

from dataclasses import dataclass

from .errors import AsdError

WORD_BITS = 32
OPCODE_BITS = 5
NUM_REGS = 8
REG_BITS = 16


@dataclass(frozen=True)
class Field:
    """One operand field.  ``kind`` is ``reg`` (register index), ``uimm`` or ``simm``."""

    name: str
    width: int
    kind: str
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
class Instr:
    """One instruction: mnemonic, opcode, fields, one-line action, notes, cycle cost.

    ``cycles`` is ``"1"`` or ``"n"`` (the instruction's ``n`` field: one cycle per lane served).
    """

    mnemonic: str
    opcode: int
    fields: tuple[Field, ...]
    action: str
    notes: str
    cycles: str = "1"

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def used_bits(self) -> int:
        return OPCODE_BITS + sum(f.width for f in self.fields)


def _reg(name: str, doc: str) -> Field:
    return Field(name, 3, "reg", doc)


_INC12 = Field("inc", 12, "simm", "post-increment added to the address register")
_N = Field("n", 6, "uimm", "lanes served, 1..lanes (one per cycle)")

INSTRUCTIONS: tuple[Instr, ...] = (
    Instr("NOP", 0, (), "nothing", "Padding; also what an all-zero word decodes to."),
    Instr("HALT", 1, (), "stop; the cycle it takes is counted",
          "Every program ends with HALT; running past the text is an error."),
    Instr("SETI", 2, (_reg("rd", "destination register"), Field("imm", 16, "uimm", "value")),
          "R[rd] = imm", "Sets an address register."),
    Instr("ADDI", 3, (_reg("rd", "destination register"), _reg("rs", "source register"),
                      Field("imm", 16, "simm", "signed addend")),
          "R[rd] = (R[rs] + imm) mod 2^16",
          "Address stepping between loop levels; ADDI rd, rs, 0 copies a register."),
    Instr("LOOP", 4, (Field("count", 16, "uimm", "iterations (0 skips the body)"),
                      Field("len", 10, "uimm", "body length in instructions, >= 1")),
          "run the next len instructions count times",
          "Zero-overhead: the jump back costs no cycle. A body must lie inside the enclosing "
          "body and must not end on the same instruction; nesting deeper than loop_depth is an "
          "error. In assembly `len` may be a label placed just after the body."),
    Instr("LOADW", 5, (_reg("rw", "weight address register"), _INC12),
          "W[i] = WMEM[R[rw]][i]; R[rw] += inc", "Loads the codes of all lanes."),
    Instr("SHIFTADD", 6, (_reg("rx", "activation address register"), _INC12),
          "x = AMEM[R[rx]]; P[i] = sa(x, W[i]); R[rx] += inc",
          "The broadcast activation times every lane's weight: two shifts and one add/subtract, "
          "signs folded in; no multiplier."),
    Instr("ACC", 7, (), "A[i] = wrap(A[i] + P[i])", "Accumulates the lane products."),
    Instr("MAC", 8, (_reg("rw", "weight address register"),
                     Field("iw", 8, "simm", "post-increment of rw"),
                     _reg("rx", "activation address register"),
                     Field("ix", 8, "simm", "post-increment of rx")),
          "W = WMEM[R[rw]]; P[i] = sa(AMEM[R[rx]], W[i]); A[i] = wrap(A[i] + P[i]); "
          "R[rw] += iw; R[rx] += ix",
          "LOADW, SHIFTADD and ACC in one cycle: the inner loop of a convolution. If rw == rx "
          "both increments apply."),
    Instr("CLR", 9, (), "A[i] = 0", "Starts a sum with no bias."),
    Instr("BIAS", 10, (_reg("rb", "parameter address register"), _INC12),
          "A[i] = BMEM[R[rb]][i]; R[rb] += inc", "Starts a sum at the bias (accumulator scale)."),
    Instr("VLD", 11, (_reg("rx", "activation address register"), _N, _INC12),
          "A[i] = AMEM[R[rx] + i] for i < n; R[rx] += inc",
          "Lane i reads its own element (channel-innermost layout): max-pool start, copies.",
          "n"),
    Instr("VMAX", 12, (_reg("rx", "activation address register"), _N, _INC12),
          "A[i] = max(A[i], AMEM[R[rx] + i]) for i < n; R[rx] += inc", "Max pooling.", "n"),
    Instr("VMAC", 13, (_reg("rx", "activation address register"), _N, _INC12),
          "P[i] = sa(AMEM[R[rx] + i], W[i]); A[i] = wrap(A[i] + P[i]) for i < n; R[rx] += inc",
          "Per-lane activations: depthwise convolution, average pooling, scaled residual add.",
          "n"),
    Instr("REQ", 14, (_reg("rq", "parameter address register"), _INC12,
                      Field("relu", 1, "uimm", "1 clamps negatives to zero")),
          "q = BMEM[R[rq]][i]; A[i] = sat(rnd(sa(A[i], q.code), q.shift)), then max(A[i], 0) "
          "if relu; R[rq] += inc",
          "Requantization with no multiplier: the scale is itself a two-digit code. "
          "q.code = q & (2^code_bits - 1), q.shift = (q >> code_bits) & 63. Rounding adds half "
          "then shifts right arithmetically; the result saturates to the activation range."),
    Instr("ACT", 15, (_reg("rq", "parameter address register"), _INC12),
          "q = BMEM[R[rq]][i]; if A[i] < 0: A[i] = sat(rnd(sa(A[i], q.code), 2^E - 1)); "
          "R[rq] += inc",
          "LeakyReLU and PReLU: the negative slope per lane as a two-digit code (q.code as in "
          "REQ)."),
    Instr("STORE", 16, (_reg("rd", "activation address register"), _N, _INC12),
          "AMEM[R[rd] + i] = A[i] mod 2^act_bits for i < n; R[rd] += inc",
          "Keeps the low act_bits bits (REQ first to saturate).", "n"),
)

BY_MNEMONIC: dict[str, Instr] = {i.mnemonic: i for i in INSTRUCTIONS}
BY_OPCODE: dict[int, Instr] = {i.opcode: i for i in INSTRUCTIONS}
OPCODES: dict[str, int] = {i.mnemonic: i.opcode for i in INSTRUCTIONS}

REQ_SHIFT_BITS = 6  # width of the shift in a REQ parameter


def _check_table() -> None:
    seen: set[int] = set()
    for ins in INSTRUCTIONS:
        assert ins.opcode not in seen and 0 <= ins.opcode < (1 << OPCODE_BITS), ins
        seen.add(ins.opcode)
        assert ins.used_bits <= WORD_BITS, ins
        assert ins.cycles in ("1", "n"), ins
        assert ins.cycles == "1" or any(f.name == "n" for f in ins.fields), ins


_check_table()


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
