"""Hypothesis strategies shared by the test suite (one module; each area has its section)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# --- number systems ---

# (digits K, exponent bits E) pairs whose codebooks are small enough for brute force.
asd_formats = st.sampled_from([(1, 2), (1, 3), (2, 2), (2, 3), (3, 3), (2, 4), (4, 3)])

# Values around the ASD range, including exact powers of two, zero and values beyond the window.
scaled_values = st.one_of(
    st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, width=64),
    st.integers(-8, 8).map(lambda e: float(np.ldexp(1.0, e))),
    st.integers(-8, 8).map(lambda e: -float(np.ldexp(1.0, e))),
    st.sampled_from([0.0, -0.0, 1e-30, 1e30, -1e30, 1.5, -1.5, 2.0]),
)

fixed_point_ints = st.integers(-(1 << 40), 1 << 40)

small_weights = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=6),
    elements=st.floats(-4.0, 4.0, allow_nan=False, width=32),
)

any_float32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
any_float64 = st.floats(allow_nan=True, allow_infinity=True)


def code_widths() -> st.SearchStrategy[int]:
    return st.integers(1, 32)


@st.composite
def codes_with_width(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    bits = draw(code_widths())
    n = draw(st.integers(0, 40))
    vals = draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=n, max_size=n))
    return np.asarray(vals, dtype=np.int64), bits


# --- programs ---
# Random accelerator configurations and random valid programs for them: the emulator's
# property tests (fast == step, assembly round trips) and the RTL's emulator == core tests.
# Registers have roles so that most addresses stay in range without simulating:
# r0, r1 WMEM pointers; r2, r3 AMEM read pointers (low quarter); r4 the AMEM write pointer
# (upper half, so reads and writes rarely meet); r5 the BMEM pointer; r6, r7 scratch.

from contract import isa as _isa  # noqa: E402
from contract import weights as _wformats  # noqa: E402
from contract.config import AccelConfig as _AccelConfig  # noqa: E402
from contract.image import Image as _Image  # noqa: E402

_ROLES = {"w": (0, 1), "x": (2, 3), "out": (4,), "b": (5,), "s": (6, 7)}


@st.composite
def small_configs(draw: st.DrawFn, max_lanes: int = 8,
                  formats: tuple[str, ...] = ("asd", "int8")) -> _AccelConfig:
    """Small accelerator instances: lanes 1..max_lanes (8), every width the configuration
    allows (act_bits 2..16, exp_bits 1..4, acc_bits from the least a product needs to 40),
    small memories, a weight format from ``formats`` (int8 with the multiplier PE kind)."""
    lanes = draw(st.integers(1, max_lanes))
    act_bits = draw(st.integers(2, 16))
    exp_bits = draw(st.integers(1, 4))
    weights = draw(st.sampled_from(formats))
    fmt = _wformats.get(weights)
    low = fmt.product_bits(act_bits, exp_bits)
    acc_bits = draw(st.sampled_from(sorted({a for a in (low, low + 3, 24, 32, 40) if a >= low})))
    return _AccelConfig(
        lanes=lanes, act_bits=act_bits, acc_bits=acc_bits, exp_bits=exp_bits,
        imem_depth=draw(st.sampled_from([128, 256])),
        wmem_depth=draw(st.sampled_from([64, 128])),
        bmem_depth=draw(st.sampled_from([16, 32])),
        amem_depth=draw(st.sampled_from([256, 512])),
        loop_depth=draw(st.integers(2, 4)),
        pe=fmt.pe_kinds[0], weights=weights,
    )


def _base(role: str, c: _AccelConfig, draw: st.DrawFn) -> int:
    if role == "w":
        return draw(st.integers(0, c.wmem_depth // 4))
    if role == "x":
        return draw(st.integers(0, c.amem_depth // 4))
    if role == "out":
        return draw(st.integers(c.amem_depth // 2, c.amem_depth // 2 + c.amem_depth // 8))
    if role == "b":
        return draw(st.integers(0, c.bmem_depth // 4))
    return draw(st.integers(0, 64))


def _pointer_role(p: _isa.Pointer) -> str:
    """The register role of a pointer: the memory it addresses, and AMEM reads vs writes."""
    if p.memory == "AMEM":
        return "out" if p.writes else "x"
    return {"WMEM": "w", "BMEM": "b"}[p.memory]


def _inc_max(p: _isa.Pointer, c: _AccelConfig) -> int:
    """Post-increments that keep most addresses in range: a block of lanes for a per-lane
    pointer, a word or two otherwise."""
    if p.per_lane:
        return c.lanes
    return 1 if p.memory == "BMEM" else 2


def _weight(ins: _isa.Instr) -> int:
    """How often an instruction is drawn: the ones that feed or drain A through memory (MAC,
    VMAC, STORE) more often, one more time per memory they touch."""
    return 1 + len(ins.pointers) if ins.access("A") in ("adds", "reads") else 1


# Every instruction that moves the pc on (LOOP and HALT are placed by _block and _program).
_STRAIGHT = [ins for ins in _isa.INSTRUCTIONS if ins.flow == "next"
             for _ in range(_weight(ins))]
_LOOP, _HALT = _isa.LOOP.mnemonic, _isa.HALT.mnemonic
_PAD = next(i.mnemonic for i in _isa.INSTRUCTIONS if i.register_only and not i.fields)  # NOP
_SET_REG = next(i for i in _isa.INSTRUCTIONS if i.reg_write and i.reg_write.source is None)


def _instr(draw: st.DrawFn, c: _AccelConfig, wild: bool) -> tuple[str, dict[str, int]]:
    """One non-LOOP, non-HALT instruction with role-respecting operands, from its table row."""
    ins = draw(st.sampled_from(_STRAIGHT))

    def reg(role: str) -> int:
        if wild and draw(st.integers(0, 9)) == 0:
            return draw(st.integers(0, _isa.NUM_REGS - 1))
        return draw(st.sampled_from(_ROLES[role]))

    def inc(hi: int) -> int:
        if wild and draw(st.integers(0, 9)) == 0:
            return draw(st.integers(-4, 4))
        return draw(st.integers(0, hi))

    lanes_n = st.integers(1, c.lanes)
    if wild and draw(st.integers(0, 19)) == 0:
        lanes_n = st.integers(0, 63)
    v: dict[str, int] = {}
    w = ins.reg_write
    if w is not None and w.source is None:  # a register set to a base address of some role
        role = draw(st.sampled_from(sorted(_ROLES)))
        v = {w.dest: draw(st.sampled_from(_ROLES[role])), w.addend: _base(role, c, draw)}
    elif w is not None:  # a register stepped from another of the same role
        role = draw(st.sampled_from(sorted(_ROLES)))
        v = {w.dest: reg(role), w.source: reg(role), w.addend: inc(4)}
    for p in ins.pointers:
        v[p.register] = reg(_pointer_role(p))
        v[p.increment] = inc(_inc_max(p, c))
    for f in ins.fields:
        if f.name == _isa.LANES_FIELD:
            v[f.name] = draw(lanes_n)
        elif f.name not in v:
            v[f.name] = draw(st.integers(f.lo, f.hi))
    assert set(v) == {f.name for f in ins.fields}, ins.mnemonic
    return ins.mnemonic, v


def _block(draw: st.DrawFn, c: _AccelConfig, depth: int, budget: int, wild: bool
           ) -> list[tuple[str, dict[str, int]]]:
    """Statements of one body, flattened to words; a nested loop is never a body's last
    statement (bodies must not end on the same instruction)."""
    out: list[tuple[str, dict[str, int]]] = []
    n = draw(st.integers(1, max(1, min(6, budget))))
    for i in range(n):
        if len(out) >= budget:
            break
        if depth > 0 and i < n - 1 and draw(st.integers(0, 3)) == 0:
            body = _block(draw, c, depth - 1, max(1, (budget - len(out)) // 2), wild)
            count = draw(st.sampled_from([0, 1, 2, 3, 4]))
            out.append((_LOOP, {"count": count, "len": len(body)}))
            out += body
        else:
            out.append(_instr(draw, c, wild))
    if out[-1][0] == _LOOP or (len(out) > 1 and _ends_nested(out)):
        out.append((_PAD, {}))
    return out


def _ends_nested(stmts: list[tuple[str, dict[str, int]]]) -> bool:
    """Does a nested loop's body end on the last statement?"""
    last = len(stmts) - 1
    for i, (m, v) in enumerate(stmts):
        if m == _LOOP and i + v["len"] == last:
            return True
    return False


@st.composite
def _program(draw: st.DrawFn, config: _AccelConfig, wild: bool) -> _Image:
    c = config
    words = []
    set_reg = _SET_REG.reg_write
    assert set_reg is not None
    for role, regs in sorted(_ROLES.items()):
        for r in regs:
            base = _base(role, c, draw)
            words.append(_isa.encode(_SET_REG.mnemonic, **{set_reg.dest: r, set_reg.addend: base}))
    body = _block(draw, c, min(3, c.loop_depth) + (1 if wild else 0), 40, wild)
    words += [_isa.encode(m, **v) for m, v in body]
    words.append(_isa.encode(_HALT))
    nw = draw(st.integers(1, c.wmem_depth // 2))
    nb = draw(st.integers(1, c.bmem_depth))
    na = draw(st.integers(0, c.amem_depth // 2))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    half = 1 << (c.acc_bits - 1)
    out_base = c.amem_depth // 2
    return _Image(
        c, np.array(words, np.int64),
        rng.integers(0, 1 << c.weight_bits, (nw, c.lanes)),
        rng.integers(-min(half, 1 << 20), min(half, 1 << 20), (nb, c.lanes)),
        rng.integers(c.act_min, c.act_max + 1, na),
        0,
        {"input": (0, na), "output": (out_base, c.amem_depth - out_base)},
    )


def programs(config: _AccelConfig, *, wild: bool = False) -> st.SearchStrategy[_Image]:
    """Random programs for ``config``: role-respecting straight-line code and properly nested
    loops, random weights, parameters and activations, always ending in HALT.  Addresses are
    in range for almost all of them (not guaranteed: post-increments accumulate in loops).
    ``wild=True`` adds stray registers, negative increments, bad lane counts and one nesting
    level too many, so that some programs fault."""
    return _program(config, wild)


def programs_and_configs(*, wild: bool = False) -> st.SearchStrategy[tuple[_AccelConfig, _Image]]:
    return small_configs().flatmap(lambda c: programs(c, wild=wild).map(lambda img: (c, img)))

# --- layers ---
# Random small layers and layer chains for the compiler (tests/zoo_onnx.chain_model builds the
# ONNX model from the spec).  Shapes stay small so the emulator runs in milliseconds.


@st.composite
def _conv_step(draw: st.DrawFn, h: int, w: int) -> tuple[str, dict]:
    k = draw(st.integers(1, min(3, h, w)))
    pads = [draw(st.integers(0, k - 1)) for _ in range(4)]
    return ("conv", {"co": draw(st.integers(1, 9)), "k": k, "s": draw(st.integers(1, 2)),
                     "pads": pads, "bias": draw(st.booleans()), "bn": draw(st.booleans()),
                     "groups": draw(st.sampled_from(["dense", "dense", "depthwise", "grouped"])),
                     "act": draw(st.sampled_from(["none", "relu", "clip", "leaky", "prelu"]))})


@st.composite
def _pool_step(draw: st.DrawFn, h: int, w: int) -> tuple[str, dict]:
    k = draw(st.integers(2, min(3, h, w)))
    op = draw(st.sampled_from(["maxpool", "avgpool"]))
    pads = [draw(st.integers(0, k // 2)) for _ in range(4)] if op == "maxpool" else [0] * 4
    # ceil_mode with end padding can make a window start in the padding, which the importer
    # refuses (runtimes disagree); ceil_mode is drawn only without padding.
    return (op, {"k": k, "s": draw(st.integers(1, 2)), "pads": pads,
                 "ceil": draw(st.booleans()) and not any(pads)})


def _out(n: int, k: int, s: int, a: int, b: int, ceil: bool = False) -> int:
    o = (-(-(n + a + b - k) // s) if ceil else (n + a + b - k) // s) + 1
    return o - 1 if ceil and (o - 1) * s >= n + a else o


@st.composite
def layer_chains(draw: st.DrawFn, max_steps: int = 3) -> dict:
    """``{"c", "h", "w", "seed", "steps"}``: 1..max_steps layers, maybe a classifier head."""
    c, h, w = draw(st.integers(1, 6)), draw(st.integers(3, 9)), draw(st.integers(3, 9))
    spec: dict = {"c": c, "h": h, "w": w, "seed": draw(st.integers(0, 2**16)), "steps": []}
    ch = c
    for _ in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from(["conv", "conv", "pool", "residual", "concat", "act"]))
        if kind == "conv":
            step = draw(_conv_step(h, w))
            p = step[1]
            groups = {"dense": 1, "depthwise": ch, "grouped": 2 if ch % 2 == 0 else 1}
            g = groups[p["groups"]]
            ch = ch if p["groups"] == "depthwise" else p["co"] * (2 if g == 2 else 1)
            h, w = (_out(h, p["k"], p["s"], p["pads"][0], p["pads"][2]),
                    _out(w, p["k"], p["s"], p["pads"][1], p["pads"][3]))
        elif kind == "pool" and min(h, w) >= 2:
            step = draw(_pool_step(h, w))
            p = step[1]
            ceil = p["ceil"] and step[0] == "maxpool"
            h, w = (_out(h, p["k"], p["s"], p["pads"][0], p["pads"][2], ceil),
                    _out(w, p["k"], p["s"], p["pads"][1], p["pads"][3], ceil))
        elif kind == "residual":
            step = ("residual", {"act": draw(st.sampled_from(["none", "relu", "leaky"]))})
        elif kind == "concat":
            step = ("concat", {"c1": draw(st.integers(1, 5)), "c2": draw(st.integers(1, 5))})
            ch = step[1]["c1"] + step[1]["c2"]
        else:
            step = ("act", {"act": draw(st.sampled_from(["relu", "leaky", "prelu", "clip"]))})
        spec["steps"].append(step)
    head = draw(st.sampled_from(["none", "gap", "gemm", "matmul", "gemm+softmax"]))
    if head == "gap":
        spec["steps"].append(("gap", {}))
    elif head != "none":
        spec["steps"].append(("gemm" if head.startswith("gemm") else "matmul",
                              {"co": draw(st.integers(1, 10))}))
        if head.endswith("softmax"):
            spec["steps"].append(("softmax", {}))
    return spec


# Accelerator configurations for compiled layers: small memories force tiling (row bands,
# channel groups, reduction chunks with spilled partial sums) on these tiny layers.
compiler_configs = st.builds(
    dict,
    lanes=st.sampled_from([1, 3, 4, 8]),
    amem_depth=st.sampled_from([512, 1024, 65536]),
    # 16 and 64 words split the reduction of most 3x3 convolutions and heads into chunks.
    wmem_depth=st.sampled_from([16, 64, 256, 4096]),
    bmem_depth=st.sampled_from([16, 256]),
    loop_depth=st.sampled_from([3, 4]),
)


@st.composite
def mac_streams(draw: st.DrawFn, config: _AccelConfig, max_len: int = 40
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(x, codes)``: broadcast activations and per-lane weight codes, one MAC per row; zero
    activations and the zero weight's code come often, as they do in real layers."""
    n = draw(st.integers(1, max_len))
    half = 1 << (config.act_bits - 1)
    act = st.one_of(st.just(0), st.integers(-half, half - 1))
    zero_code = int(config.weight_format.encode(0, config.exp_bits))
    code = st.one_of(st.just(zero_code), st.integers(0, (1 << config.weight_bits) - 1))
    x = draw(hnp.arrays(np.int64, n, elements=act))
    codes = draw(hnp.arrays(np.int64, (n, config.lanes), elements=code))
    return x, codes
