"""Assembler and disassembler: text <-> program image, both driven by the ISA table.

Syntax, one statement a line; ``;`` or ``#`` starts a comment::

    label:                         a name for the address of the next instruction
    MNEMONIC op, op, ...           operands in the table's field order; registers r0..r7,
                                   integers in decimal, 0x hex or 0b binary
    LOOP count, label              the body ends just before ``label``: len = label - pc - 1
    .config key=value ...          override configuration fields (before any data)
    .wmem WORD c0 c1 ...           weight codes, lanes per word, from word WORD on
    .wint WORD w0 w1 ...           the same from integer weights (v * 2^(2^E-1)), encoded here
    .bmem WORD p0 p1 ...           raw BMEM entries (biases), lanes per word
    .req WORD m0 s0 m1 s1 ...      REQ/ACT parameters: integer multiplier m and shift s per lane
    .amem ADDR x0 x1 ...           initial activations from address ADDR on
    .region NAME BASE LENGTH       names an AMEM range (``output`` is what `asd emu` prints)

The disassembler prints an image back in this syntax, data included, so ``asm(disasm(img))``
rebuilds the same image.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import bitstring
import numpy as np

from contract import hwcode, isa
from contract.config import AccelConfig, ConfigError
from contract.errors import AsdError
from contract.image import Image, ImageError
from contract.semantics import req_param

# A bound on the bytes read from one source file (/dev/zero must not hang the reader).
MAX_SOURCE_BYTES = 64 << 20


class AsmError(ValueError, AsdError):
    """An assembly error, formatted ``file:line:col: message``."""

    def __init__(self, source: str, line: int, col: int, msg: str):
        super().__init__(f"{source}:{line}:{col}: {msg}")
        self.source, self.line, self.col, self.msg = source, line, col, msg


_LABEL = re.compile(r"^([A-Za-z_.][\w.]*):")
_INT = re.compile(r"^[-+]?(0x[0-9a-fA-F]+|0b[01]+|\d+)$")


@dataclass
class _Tok:
    text: str
    col: int


def _split_operands(s: str, col0: int) -> list[_Tok]:
    toks = []
    pos = 0
    for part in s.split(","):
        stripped = part.strip()
        lead = len(part) - len(part.lstrip())
        toks.append(_Tok(stripped, col0 + pos + lead))
        pos += len(part) + 1
    return toks


def _int(tok: _Tok, source: str, line: int, what: str = "an integer") -> int:
    if not _INT.match(tok.text):
        raise AsmError(source, line, tok.col + 1, f"expected {what}, got '{tok.text}'")
    try:
        return int(tok.text, 0)
    except ValueError:
        raise AsmError(source, line, tok.col + 1, f"expected {what} of at most "
                       f"{sys.get_int_max_str_digits()} digits, got {len(tok.text)} "
                       "characters") from None


def _words(rest: str, col0: int) -> list[_Tok]:
    out = []
    for m in re.finditer(r"\S+", rest):
        out.append(_Tok(m.group(0), col0 + m.start()))
    return out


def assemble(text: str, config: AccelConfig | None = None, source: str = "<input>") -> Image:
    """Assemble source text into an image; raises :class:`AsmError`."""
    config = config or AccelConfig()
    # Pass 1: labels and the raw statements.
    stmts: list[tuple[int, int, str, str]] = []  # (line, col, head, rest)
    labels: dict[str, int] = {}
    pc = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        code = re.split(r"[;#]", raw, maxsplit=1)[0].rstrip()
        col = len(code) - len(code.lstrip())
        body = code.strip()
        while True:
            m = _LABEL.match(body)
            if not m:
                break
            name = m.group(1)
            if name in labels:
                raise AsmError(source, lineno, col + 1, f"label '{name}' defined twice")
            labels[name] = pc
            cut = len(m.group(0))
            rest = body[cut:]
            col += cut + len(rest) - len(rest.lstrip())
            body = rest.strip()
        if not body:
            continue
        head, _, rest = body.partition(" ")
        rest_col = col + len(head) + 1 + (len(rest) - len(rest.lstrip()))
        stmts.append((lineno, col, head, rest.strip() if rest else ""))
        if not head.startswith("."):
            pc += 1
        del rest_col

    # Pass 2: directives that shape the configuration come first.
    overrides: dict[str, object] = {}
    data_seen = False
    for lineno, col, head, rest in stmts:
        if head != ".config":
            data_seen = data_seen or head != ".region"
        elif data_seen:
            raise AsmError(source, lineno, col + 1, ".config must come before any data or "
                           "instruction, found it after")
        if head == ".config":
            for tok in _words(rest, col + len(head) + 1):
                key, eq, val = tok.text.partition("=")
                if not eq:
                    raise AsmError(source, lineno, tok.col + 1, f"expected key=value, got "
                                   f"'{tok.text}'")
                overrides[key] = (val if key in ("pe", "weights") else
                                  _int(_Tok(val, tok.col + len(key) + 1), source, lineno))
    if overrides:
        try:
            config = AccelConfig.from_dict({**config.to_dict(), **overrides}, source)
        except ConfigError as exc:
            raise AsmError(source, 1, 1, str(exc)) from None
    lanes = config.lanes

    words: list[int] = []
    data: dict[str, dict[int, int]] = {"wmem": {}, "bmem": {}, "amem": {}}
    regions: dict[str, tuple[int, int]] = {}
    for lineno, col, head, rest in stmts:
        rest_col = col + len(head) + 1
        if head.startswith("."):
            toks = _words(rest, rest_col)
            if head == ".config":
                continue
            if head == ".region":
                if len(toks) != 3:
                    raise AsmError(source, lineno, col + 1, ".region takes NAME BASE LENGTH")
                regions[toks[0].text] = (_int(toks[1], source, lineno),
                                         _int(toks[2], source, lineno))
                continue
            if head not in (".wmem", ".wint", ".bmem", ".req", ".amem"):
                raise AsmError(source, lineno, col + 1, f"unknown directive '{head}'")
            if not toks:
                raise AsmError(source, lineno, col + 1, f"{head} needs an address")
            addr = _int(toks[0], source, lineno, "an address")
            vals = [_int(t, source, lineno) for t in toks[1:]]
            depth = {".amem": config.amem_depth, ".wmem": config.wmem_depth,
                     ".wint": config.wmem_depth}.get(head, config.bmem_depth)
            n = len(vals) if head == ".amem" else len(vals) // (2 * lanes if head == ".req"
                                                                else lanes)
            if not 0 <= addr <= depth - max(n, 1):
                raise AsmError(source, lineno, toks[0].col + 1,
                               f"{head} address: expected 0..{depth - max(n, 1)} (depth {depth}, "
                               f"{n} word(s)), found {addr}")
            if head == ".amem":
                for i, v in enumerate(vals):
                    data["amem"][addr + i] = v
                continue
            per_word = 2 * lanes if head == ".req" else lanes
            if len(vals) % per_word:
                raise AsmError(source, lineno, col + 1, f"{head} needs a multiple of "
                               f"{per_word} values ({lanes} lanes), got {len(vals)}")
            if head == ".wint":
                try:
                    fmt = config.weight_format
                    vals = [int(c) for c in fmt.encode(np.array(vals), config.exp_bits)]
                except ValueError as exc:
                    raise AsmError(source, lineno, rest_col + 1, str(exc)) from None
            if head == ".req":
                try:
                    vals = [req_param(int(hwcode.encode(np.array(m), config.exp_bits)), s,
                                      config.code_bits) for m, s in zip(vals[::2], vals[1::2])]
                except ValueError as exc:
                    raise AsmError(source, lineno, rest_col + 1, str(exc)) from None
            mem = "wmem" if head in (".wmem", ".wint") else "bmem"
            for i, v in enumerate(vals):
                data[mem][addr * lanes + i] = v
            continue
        ins = isa.BY_MNEMONIC.get(head.upper())
        if ins is None:
            raise AsmError(source, lineno, col + 1, f"unknown instruction '{head}' (known: "
                           + ", ".join(isa.BY_MNEMONIC) + ")")
        pc = len(words)
        toks = _split_operands(rest, rest_col) if rest else []
        if len(toks) != len(ins.fields):
            want = ", ".join(f.name for f in ins.fields) or "no operands"
            raise AsmError(source, lineno, col + 1,
                           f"{ins.mnemonic} takes {len(ins.fields)} operand(s) ({want}), "
                           f"got {len(toks)}")
        values: dict[str, int] = {}
        for f, tok in zip(ins.fields, toks):
            if f.kind == "reg":
                m = re.fullmatch(r"[rR]([0-9]+)", tok.text)
                if not m or int(m.group(1)) >= isa.NUM_REGS:
                    raise AsmError(source, lineno, tok.col + 1,
                                   f"{ins.mnemonic} {f.name}: expected a register r0..r"
                                   f"{isa.NUM_REGS - 1}, got '{tok.text}'")
                v = int(m.group(1))
            elif ins.flow == "loop" and f.name == "len" and not _INT.match(tok.text):
                if tok.text not in labels:
                    raise AsmError(source, lineno, tok.col + 1, f"unknown label '{tok.text}'")
                v = labels[tok.text] - pc - 1
            else:
                v = _int(tok, source, lineno)
            if not f.lo <= v <= f.hi:
                raise AsmError(source, lineno, tok.col + 1,
                               f"{ins.mnemonic} {f.name} = {v} out of range {f.lo}..{f.hi}")
            values[f.name] = v
        words.append(isa.encode(ins.mnemonic, **values))

    def dense(mem: dict[int, int], width: int) -> np.ndarray:
        if not mem:
            return np.zeros((0, width), np.int64)
        n = (max(mem) // width + 1) * width
        arr = np.zeros(n, np.int64)
        for k, v in mem.items():
            arr[k] = v
        return arr.reshape(-1, width)

    amem = data["amem"]
    base = min(amem) if amem else 0
    acts = np.zeros((max(amem) - base + 1) if amem else 0, np.int64)
    for k, v in amem.items():
        acts[k - base] = v
    try:
        return Image(config, np.array(words, np.int64), dense(data["wmem"], lanes),
                     dense(data["bmem"], lanes), acts, base, regions)
    except ImageError as exc:
        raise AsmError(source, 1, 1, str(exc)) from None


def assemble_file(path: str | Path, config: AccelConfig | None = None) -> Image:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise AsmError(str(p), 0, 0, f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_SOURCE_BYTES:
        raise AsmError(str(p), 0, 0, f"source too large: expected at most {MAX_SOURCE_BYTES} "
                       "bytes, found more")
    try:
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise AsmError(str(p), line, 0, f"expected UTF-8 text, found byte "
                       f"0x{raw[exc.start]:02x} at offset {exc.start}") from None
    return assemble(text, config, str(p))


def format_instr(word: int) -> str:
    """One instruction word as assembly text (raises isa.DecodeError)."""
    ins, values = isa.decode(word)
    ops = []
    for f in ins.fields:
        v = values[f.name]
        ops.append(f"r{v}" if f.kind == "reg" else str(v))
    return ins.mnemonic + (" " + ", ".join(ops) if ops else "")


def text_bytes(words: list[int]) -> bytes:
    """The instruction words as big-endian bytes (the order `asd disasm --raw` reads)."""
    return bitstring.pack([f"uint:32={w}" for w in words] or ["uint:0=0"]).tobytes()


def disassemble(image: Image, data: bool = True) -> str:
    """The image as assembly: text with addresses in comments, then the data directives."""
    c = image.config
    default = AccelConfig()
    lines = []
    changed = [f"{k}={v}" for k, v in c.to_dict().items() if default.to_dict().get(k) != v]
    if changed:
        lines.append(".config " + " ".join(changed))
    for pc, word in enumerate(image.text.tolist()):
        try:
            text = format_instr(word)
        except isa.DecodeError as exc:
            raise ImageError(f"pc {pc}: {exc}") from None
        lines.append(f"    {text:<36}; {pc:4d}  {word:08x}")
    if data:
        # Zero rows are implied, except the last, which fixes the section's length.
        last_w, last_p = len(image.weights) - 1, len(image.params) - 1
        for w, row in enumerate(image.weights.tolist()):
            if any(row) or w == last_w:
                lines.append(f".wmem {w} " + " ".join(f"0x{v:x}" for v in row))
        for w, row in enumerate(image.params.tolist()):
            if any(row) or w == last_p:
                lines.append(f".bmem {w} " + " ".join(str(v) for v in row))
        acts = image.acts.tolist()
        for i in range(0, len(acts), 16):
            lines.append(f".amem {image.acts_base + i} " + " ".join(map(str, acts[i:i + 16])))
        for name, (b, n) in sorted(image.regions.items()):
            lines.append(f".region {name} {b} {n}")
    return "\n".join(lines) + "\n"
