"""``asd export``: the accelerator core as Verilog or VHDL, with a self-checking testbench."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from asd_cli.main import UserError

EPILOG = """\
examples:
  asd export --hdl verilog -o build/rtl                  # default configuration, shiftadd PEs
  asd export --hdl vhdl --pe multiplier -o build/rtl-mul  # the same datapath with multipliers
  asd export --hdl verilog --config accel.toml --image prog.bin -o build/prog
  sh build/rtl/run.sh                                     # Icarus (or GHDL): ASD-CHECK PASS

The directory gets the core (asd_core.v, or asd_core.vhd with MyHDL's package), the testbench
(tb_asd.v / tb_asd.vhd), the image's memories as $readmemh files (imem/wmem/bmem/amem.hex; a
built-in demo program unless --image is given), expect.hex with the emulator's final AMEM, and
run.sh.  The testbench prints the cycle count, accumulators, registers and AMEM, and with
+check (Verilog) or -gcheck=true (VHDL) compares them with the emulator's."""


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="write the core as Verilog or VHDL with a testbench",
                       description="Convert the MyHDL core to Verilog or VHDL and write a "
                                   "self-checking testbench that loads $readmemh images.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hdl", required=True, choices=("verilog", "vhdl"), help="target language")
    p.add_argument("--config", metavar="CFG",
                   help="accelerator configuration (.toml or .json; default: the defaults)")
    p.add_argument("--pe", choices=("shiftadd", "multiplier"),
                   help="PE kind (default: the configuration's, shiftadd unless set)")
    p.add_argument("--image", metavar="FILE.bin",
                   help="program image for the testbench (default: a built-in demo program)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from contract.config import AccelConfig, ConfigError
    from contract.image import Image, ImageError

    try:
        config = AccelConfig.load(args.config) if args.config else AccelConfig()
        if args.pe:
            config = config.replace(pe=args.pe)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    image = None
    if args.image:
        try:
            image = Image.load(args.image)
            if not args.config:
                config = image.config.replace(pe=args.pe or image.config.pe)
            image.check_config(config)
        except ImageError as exc:
            raise UserError(str(exc)) from None
    try:
        from accel import export
    except ImportError as exc:
        raise UserError(f"exporting needs MyHDL ({exc}): pip install -e '.[hw]'") from None
    from contract.errors import AsdError
    from contract.files import DirectoryBuilder, OutputError

    target = Path(args.output)
    # Built beside and swapped in: a failure (a program that does not fit the configuration,
    # a full disk) leaves the previous directory as it was.  Only the names export writes
    # are its own; any other file there is the user's and is kept.
    owned = [p.name for p in target.glob("*") if p.name in EXPORT_NAMES
             or (p.name.startswith("pck_myhdl_") and p.suffix == ".vhd")]
    with DirectoryBuilder(target, owned) as out:
        try:
            files = export.export(config, args.hdl, out.staging, image)
        except AsdError as exc:
            if image is not None or isinstance(exc, OutputError):
                raise
            raise UserError(f"the built-in demo program does not fit "
                            f"{args.config or 'the configuration'} ({exc}); give a program "
                            "that does with --image") from None
        out.owned.update(Path(f.name) for f in files)
    for f in files:
        print(target / f.name)
    return 0


# Every file `asd export` writes, for either language (the MyHDL package's name carries its
# version, so it is matched by prefix).
EXPORT_NAMES = frozenset({"asd_core.v", "asd_core.vhd", "tb_asd.v", "tb_asd.vhd", "imem.hex",
                          "wmem.hex", "bmem.hex", "amem.hex", "expect.hex", "run.sh"})
