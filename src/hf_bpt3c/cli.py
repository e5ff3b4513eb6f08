"""The `hf-bpt3c` command line (one subcommand per task).

hf-bpt3c convert-fastai WEIGHTS --vocab ITOS --out DIR [--target-vocab ITOS2] [--backwards]
                        [--bptt 72] [--max-len 1440] [--overwrite]
hf-bpt3c env            versions, CPU capability, whether bfloat16 is native here
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

import torch
import transformers

from . import __version__
from .convert import convert_fastai
from .hardware import bf16_is_native, cpu_summary


def _convert_fastai(args: argparse.Namespace) -> int:
    result = convert_fastai(
        args.weights,
        args.vocab,
        args.out,
        target_vocab=args.target_vocab,
        backwards=args.backwards,
        bptt=args.bptt,
        max_len=args.max_len,
        overwrite=args.overwrite,
    )
    config = result.config
    print(
        f"converted a fastai {result.layout} {result.kind.replace('_', ' ')} (vocab {config.vocab_size}, "
        f"embedding {config.embedding_size}, hidden {config.hidden_size}, {config.num_hidden_layers} layers"
        f"{', backwards' if config.backwards else ''}) into {result.out_dir}"
    )
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _env(args: argparse.Namespace) -> int:
    print(f"hf_bpt3c {__version__} | torch {torch.__version__} | transformers {transformers.__version__}")
    print(f"python {platform.python_version()} | {platform.machine()} | {torch.get_num_threads()} torch threads")
    print(cpu_summary())
    auto = "bfloat16" if bf16_is_native("cpu") else "float32"
    print(f'compute_dtype="auto" on this CPU: {auto}')
    if torch.cuda.is_available():
        name, native = torch.cuda.get_device_name(), bf16_is_native("cuda")
        print(f"CUDA: {name}, native bfloat16: {'yes' if native else 'no'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `hf-bpt3c` parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="hf-bpt3c", description="ULMFiT AWD-LSTM / BPT3C tools for transformers")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = commands.add_parser(
        "convert-fastai",
        help="convert a fastai ULMFiT checkpoint into a save_pretrained folder",
        description="Convert a fastai v2/v1/0.7 AWD-LSTM checkpoint (LM, encoder or v2 classifier) and its "
        "vocabulary into a folder for AutoModelForCausalLM / AutoModelForSequenceClassification / AutoTokenizer.",
    )
    convert.add_argument("weights", metavar="WEIGHTS", help=".pth/.h5 state dict or fastai {'model':..., 'opt':...}")
    convert.add_argument("--vocab", required=True, metavar="ITOS", help="the checkpoint's pickled itos list")
    convert.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty or new)")
    convert.add_argument("--target-vocab", metavar="ITOS2", help="map the embedding onto this vocabulary by token")
    convert.add_argument("--backwards", action="store_true", help="the checkpoint is a backward model")
    convert.add_argument("--bptt", type=int, default=72, help="BPT3C chunk length (default: 72)")
    convert.add_argument("--max-len", type=int, default=1440, help="BPT3C kept window (default: 1440)")
    convert.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty --out folder (replaces the files the conversion writes, keeps the others)",
    )
    convert.set_defaults(run=_convert_fastai)
    env = commands.add_parser(
        "env", help="print versions, the CPU capability and whether bfloat16 is native here (for bug reports)"
    )
    env.set_defaults(run=_env)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hf-bpt3c` with `argv` (default: `sys.argv[1:]`); returns the exit status (2 on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"hf-bpt3c {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
