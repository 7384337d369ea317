"""``asd asm``, ``asd disasm`` and ``asd emu``: the ISA tools."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from asd_cli.main import UserError
from contract.backend import BACKENDS, DEFAULT_MAX_CYCLES, GOLDEN
from contract.errors import AsdError

ASM_EPILOG = """\
examples:
  asd asm programs/examples/dot.s -o dot.bin
  asd asm conv.s -o conv.bin --config accel.toml   # fields not set by .config come from here

Syntax (one statement a line; ';' or '#' starts a comment):
  loop:   LOOP 16, done        ; body ends just before the label 'done'
          MAC r0, 1, r1, 1
  done:   STORE r2, 8, 8
  .wint 0 64 -32 ...           ; weights as integers, lanes per word
  .amem 0 12 -7 ...            ; initial activations from address 0
  .region output 512 8         ; what 'asd emu' prints
Errors name FILE:LINE:COL.  The instruction set is documented in docs/isa.md."""

DISASM_EPILOG = """\
examples:
  asd disasm dot.bin              # text and data; 'asd asm' rebuilds the same bytes
  asd disasm dot.bin --no-data    # only the instructions"""

EMU_EPILOG = """\
examples:
  asd emu dot.bin                       # step mode: prints the output region and counters
  asd emu conv.bin --fast               # loops vectorized; same results and counters
  asd emu dot.bin --trace | head        # one line per instruction: pc, text, what changed
  asd emu dot.bin --json > result.json  # for machines
  asd emu prog.s                        # assembles first (default configuration)
  asd emu spin.bin --max-cycles 1000    # stop a program that never halts
  asd emu dot.bin --backend icarus      # the RTL under Icarus instead of the emulator
Faults (address out of range, loop nesting, cycle limit, ...) are one line naming the pc and
the instruction; exit status 2."""


def register(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("asm", help="assemble a .s file into a program image",
                       description="Assemble accelerator assembly into a program image.",
                       epilog=ASM_EPILOG, formatter_class=fmt)
    p.add_argument("source", metavar="FILE.s")
    p.add_argument("-o", "--output", metavar="FILE.bin",
                   help="image to write (default: FILE.bin next to the source)")
    p.add_argument("--config", metavar="CFG", help="accelerator configuration (.toml or .json)")
    p.set_defaults(func=cmd_asm)

    p = sub.add_parser("disasm", help="print a program image as assembly",
                       description="Print a program image as assembly, data included.",
                       epilog=DISASM_EPILOG, formatter_class=fmt)
    p.add_argument("image", metavar="FILE.bin")
    p.add_argument("--no-data", action="store_true", help="leave out the data directives")
    p.set_defaults(func=cmd_disasm)

    p = sub.add_parser("emu", help="run a program image on the golden emulator or the RTL",
                       description="Run a program image to HALT; print the result memory "
                       "region(s) and the counters.", epilog=EMU_EPILOG, formatter_class=fmt)
    p.add_argument("image", metavar="FILE.bin", help="program image (or a .s file)")
    p.add_argument("--fast", action="store_true",
                   help="vectorize loops (same results and counters as step mode)")
    p.add_argument("--trace", action="store_true", help="print every instruction executed")
    p.add_argument("--max-cycles", type=int, default=None, metavar="N",
                   help=f"stop with an error after N cycles (default {DEFAULT_MAX_CYCLES})")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--region", action="append", metavar="NAME",
                   help="region to print (repeatable; default: 'output', or all)")
    p.add_argument("--backend", choices=BACKENDS, default=GOLDEN,
                   help="emu (default), or an RTL simulation (accel.sims)")
    p.set_defaults(func=cmd_emu)


def _load_config(path: str | None) -> Any:
    if path is None:
        return None
    from contract.config import AccelConfig, ConfigError

    try:
        return AccelConfig.load(path)
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def _load_image(path: str) -> Any:
    from contract.image import Image, ImageError
    from emu.asm import AsmError, assemble_file

    try:
        if path.endswith(".s"):
            return assemble_file(path)
        return Image.load(path)
    except (AsmError, ImageError) as exc:
        raise UserError(str(exc)) from None


def cmd_asm(args: argparse.Namespace) -> int:
    from emu.asm import AsmError, assemble_file

    config = _load_config(args.config)
    try:
        image = assemble_file(args.source, config)
    except AsmError as exc:
        raise UserError(str(exc)) from None
    out = Path(args.output) if args.output else Path(args.source).with_suffix(".bin")
    try:
        image.write(out)  # in one step: a failure names the path and keeps the previous file
    except AsdError as exc:
        raise UserError(str(exc)) from None
    print(f"{out}: {len(image.text)} instructions, {len(image.weights)} weight words, "
          f"{len(image.params)} parameter words, {len(image.acts)} activations")
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    from contract.image import ImageError
    from emu.asm import disassemble

    image = _load_image(args.image)
    try:
        sys.stdout.write(disassemble(image, data=not args.no_data))
    except ImageError as exc:
        raise UserError(f"{args.image}: {exc}") from None
    return 0


def _print_trace_entry(e: dict[str, Any]) -> None:
    extra = "".join(f" {k}={v}" for k, v in e.items() if k not in ("cycle", "pc", "instr"))
    print(f"{e['cycle']:>8} {e['pc']:>5}  {e['instr']:<28}{extra}")


class _JsonTraceSpool:
    """Trace entries as the items of a JSON list, kept in a temporary file, not in memory."""

    def __init__(self) -> None:
        import tempfile

        self.file = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.separator = ""

    def add(self, entry: dict[str, Any]) -> None:
        self.file.write(self.separator + json.dumps(entry))
        self.separator = ", "

    def copy_to(self, out: Any) -> None:
        import shutil

        self.file.seek(0)
        shutil.copyfileobj(self.file, out)
        self.close()

    def close(self) -> None:
        self.file.close()


def _pick_regions(regions: dict[str, tuple[int, int]], wanted: list[str] | None
                  ) -> dict[str, tuple[int, int]]:
    if wanted:
        missing = [n for n in wanted if n not in regions]
        if missing:
            raise UserError(f"image names no region '{missing[0]}' (it has: "
                            f"{', '.join(sorted(regions)) or 'none'})")
        return {n: regions[n] for n in wanted}
    if "output" in regions:
        return {"output": regions["output"]}
    return dict(regions)


def cmd_emu(args: argparse.Namespace) -> int:
    from contract.backend import Limits, get_backend

    image = _load_image(args.image)
    # Before running: a typo in --region should not cost a whole run.
    _pick_regions(image.regions, args.region)
    max_cycles = DEFAULT_MAX_CYCLES if args.max_cycles is None else args.max_cycles
    if max_cycles < 1:
        raise UserError("--max-cycles must be at least 1")
    golden = args.backend == GOLDEN
    if not golden and (args.fast or args.trace):
        raise UserError("--fast and --trace apply to the emu backend only")
    options: dict[str, Any] = {"fast": args.fast, "trace": args.trace} if golden else {}
    json_trace = None
    if golden and args.trace and not args.json:
        # Streamed: each line is printed as it runs (no trace kept in memory), so the lines
        # before a cycle limit or a fault are shown, then the fault line.
        options["on_trace"] = _print_trace_entry
    elif golden and args.trace:
        # Streamed too, into a temporary file: the JSON object puts the trace after the
        # counters and regions, known only at the end, so it is copied out after the run.
        json_trace = _JsonTraceSpool()
        options["on_trace"] = json_trace.add
    try:
        result = get_backend(args.backend, **options).run(image, Limits(max_cycles=max_cycles))
    except AsdError as exc:  # a program fault, a foreign image, a simulator missing or failing
        if json_trace is not None:
            json_trace.close()
        raise UserError(str(exc)) from None
    amem, regions, trace = result.amem, result.regions, result.trace
    out: dict[str, Any] = {"image": args.image, "backend": args.backend}
    if golden:
        out["mode"] = "fast" if args.fast and not args.trace else "step"
        out["counters"] = result.counters
        out["registers"] = result.regs
        out["accumulators"] = result.acc.tolist()
    else:
        # The RTL exposes no operation counts; its registers and accumulators are left out so
        # the output keeps the shape scripts already read.
        out["counters"] = {"cycles": result.cycles}
    shown = _pick_regions(regions, args.region)
    out["regions"] = {n: {"base": b, "length": k, "values": [int(v) for v in amem[b: b + k]]}
                      for n, (b, k) in shown.items()}
    if args.json:
        if json_trace is not None:
            # The same text json.dump gives with "trace" as the last key.
            sys.stdout.write(json.dumps(out)[:-1] + ', "trace": [')
            json_trace.copy_to(sys.stdout)
            sys.stdout.write("]}\n")
            return 0
        if trace is not None:
            out["trace"] = trace
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    if trace is not None:
        for e in trace:
            _print_trace_entry(e)
    for name, reg in out["regions"].items():
        print(f"{name} [{reg['base']}..{reg['base'] + reg['length']}): "
              + " ".join(map(str, reg["values"])))
    if not shown:
        print("(the image names no regions; add '.region output BASE LENGTH')")
    c = out["counters"]
    print("cycles " + str(c["cycles"]) + "".join(
        f", {k.replace('_', ' ')} {v}" for k, v in c.items() if k not in ("cycles", "ops")))
    if "ops" in c:
        used = {k: v for k, v in c["ops"].items() if v}
        print("ops " + ", ".join(f"{k} {v}" for k, v in used.items()))
    return 0
