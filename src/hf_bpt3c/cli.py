"""The `hf-bpt3c` command line (one subcommand per task).

hf-bpt3c convert-fastai WEIGHTS --vocab ITOS --out DIR [--sp-model spm.model] [--lang xx] [--target-vocab ITOS2]
                        [--backwards] [--bptt 72] [--max-len 1440] [--labels neg,pos | --labels @FILE] [--overwrite]
hf-bpt3c convert-fastai EXPORT --out DIR [--sp-model spm.model] [--lang xx] [--max-export-bytes SIZE] [--overwrite]
                        (fastai's learn.export() file, export.pkl / model.pkl, read without running its pickle)
hf-bpt3c fetch-fastai   [wt103-fwd | wt103-bwd | URL] --out DIR [--direction fwd|bwd] [--lang xx] [--base-url URL]
                        [--archive PATH] [--cache-dir DIR] [--overwrite] [--bptt 72] [--max-len 1440]
                        [--max-extract-bytes SIZE]
hf-bpt3c export-onnx    MODEL_DIR --out DIR [--int8] [--opset 17]
hf-bpt3c env            versions, CPU capability, whether bfloat16 is native here
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence

import torch
import transformers

from . import __version__
from .convert.fastai_export import MAX_EXPORT_BYTES_ENV, FastaiExportConversion, convert_fastai_export
from .convert.from_fastai import (
    FASTAI_BASE_URL_ENV,
    FASTAI_PRETRAINED,
    FastaiConversion,
    convert_fastai,
    fetch_fastai,
)
from .convert.safety import MAX_ARCHIVE_BYTES_ENV, ArchiveLimits, parse_size, terminate_cleanly
from .models.awd_lstm.hardware import bf16_is_native, cpu_summary


def read_labels(value: str) -> list[str]:
    """`--labels`: comma-separated class names (`neg,pos`), or `@FILE` / the path of an existing file with one
    name per line (blank lines skipped)."""
    path = value[1:] if value.startswith("@") else value if os.path.isfile(value) else None
    if path is None:
        return [name.strip() for name in value.split(",")]
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as err:
        raise ValueError(f"--labels file {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"--labels file {path} is not UTF-8 text (byte {err.start})") from None


# the options a fastai export records itself (refused with an export, whose own values are used)
_EXPORT_SETS = (("target_vocab", "--target-vocab"), ("backwards", "--backwards"), ("bptt", "--bptt"))
_EXPORT_SETS += (("max_len", "--max-len"), ("labels", "--labels"))


def _convert_fastai(args: argparse.Namespace) -> int:
    if args.vocab is None:
        return _convert_fastai_export(args)
    if args.max_export_bytes is not None:
        raise ValueError("--max-export-bytes applies to a fastai export (WEIGHTS without --vocab)")
    result = convert_fastai(
        args.weights,
        args.vocab,
        args.out,
        target_vocab=args.target_vocab,
        backwards=args.backwards,
        bptt=72 if args.bptt is None else args.bptt,
        max_len=1440 if args.max_len is None else args.max_len,
        overwrite=args.overwrite,
        labels=None if args.labels is None else read_labels(args.labels),
        sp_model=args.sp_model,
        lang=args.lang,
    )
    _print_conversion(result)
    return 0


def _convert_fastai_export(args: argparse.Namespace) -> int:
    """`convert-fastai EXPORT --out DIR` (no --vocab): a fastai `learn.export()` file, read without running its
    pickle; the vocabulary, class names, bptt/max_len and direction come from it."""
    given = [flag for name, flag in _EXPORT_SETS if getattr(args, name) not in (None, False)]
    if given:
        raise ValueError(
            f"{', '.join(given)} cannot be used with a fastai export (WEIGHTS without --vocab): the export records "
            "its vocabulary, class names, bptt, max_len and direction itself"
        )
    result = convert_fastai_export(
        args.weights,
        args.out,
        overwrite=args.overwrite,
        sp_model=args.sp_model,
        lang=args.lang,
        max_bytes=args.max_export_bytes,
    )
    _print_conversion(result)
    return 0


def _fetch_fastai(args: argparse.Namespace) -> int:
    fetched = fetch_fastai(
        args.name,
        args.out,
        base_url=args.base_url,
        archive=args.archive,
        cache_dir=args.cache_dir,
        overwrite=args.overwrite,
        bptt=args.bptt,
        max_len=args.max_len,
        limits=_limits(args.max_extract_bytes),
        direction=args.direction,
        lang=args.lang,
    )
    how = "used the cached" if fetched.from_cache else "downloaded the" if fetched.url else "read the local"
    print(f"{how} archive {fetched.archive}" + (f" ({fetched.url})" if fetched.url else ""))
    if fetched.layout == "fastai_ulmfit":
        lang = f"{fetched.lang} (from {fetched.lang_source})" if fetched.lang else "unknown (pass --lang)"
        print(f"fastai_ulmfit archive: the {fetched.direction} model, language {lang}")
    _print_conversion(fetched.conversion)
    return 0


def _limits(max_extract_bytes: str | None) -> ArchiveLimits | None:
    """`--max-extract-bytes SIZE`: the most the archive may expand to, in all and per file."""
    if max_extract_bytes is None:
        return None
    size = parse_size(max_extract_bytes, "--max-extract-bytes")
    return ArchiveLimits(max_total_bytes=size, max_member_bytes=size)


def _print_conversion(result: FastaiConversion) -> None:
    config = result.config
    if isinstance(result, FastaiExportConversion):
        learner = result.learner.rsplit(".", 1)[-1]
        print(f"read the fastai export {result.export} (a {learner}) without running its pickle")
    print(
        f"converted a fastai {result.layout} {result.kind.replace('_', ' ')} (vocab {config.vocab_size}, "
        f"embedding {config.embedding_size}, hidden {config.hidden_size}, {config.num_hidden_layers} layers"
        f"{', backwards' if config.backwards else ''}) into {result.out_dir}"
    )
    if result.tokenizer == "sentencepiece":
        print(f"tokenizer: SentencePiece{f' (language {result.lang})' if result.lang else ''}")
    if result.kind == "classifier":
        print(f"classes: {', '.join(config.id2label[i] for i in range(config.num_labels))}")
    for note in result.notes:
        print(f"note: {note}")


def _export_onnx(args: argparse.Namespace) -> int:
    from .serving.onnx import export_onnx  # onnx and onnxruntime are optional

    out = export_onnx(args.model_dir, args.out, int8=args.int8, opset=args.opset)
    print(f"exported {args.model_dir} to ONNX (opset {args.opset}{', with int8 graphs' if args.int8 else ''}) in {out}")
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
        help="convert a fastai ULMFiT checkpoint or exported learner into a save_pretrained folder",
        description="Convert a fastai v2/v1/0.7 AWD-LSTM checkpoint (LM, encoder or v2 classifier) and its "
        "vocabulary into a folder for AutoModelForCausalLM / AutoModelForSequenceClassification / AutoTokenizer. "
        "Without --vocab, WEIGHTS is a fastai export (learn.export()'s export.pkl, a Hub fastai repository's "
        "model.pkl) of an AWD-LSTM text classifier or language model, read without running its pickle: its "
        "vocabulary, class names, bptt/max_len, direction and tokenizer come from it.",
    )
    convert.add_argument(
        "weights",
        metavar="WEIGHTS",
        help=".pth/.h5 state dict or fastai {'model':..., 'opt':...}; without --vocab, a fastai export (export.pkl)",
    )
    convert.add_argument(
        "--vocab", metavar="ITOS", help="the checkpoint's pickled itos list (leave out for a fastai export)"
    )
    convert.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty or new)")
    convert.add_argument(
        "--sp-model",
        metavar="SPM",
        help="the SentencePiece model (spm.model) of a checkpoint trained with fastai's SentencePieceTokenizer, such "
        "as fastai_ulmfit's: the tokenizer is then SentencePiece instead of fastai's English words",
    )
    convert.add_argument("--lang", metavar="CODE", help="language code recorded in the tokenizer and model card (de)")
    convert.add_argument("--target-vocab", metavar="ITOS2", help="map the embedding onto this vocabulary by token")
    convert.add_argument("--backwards", action="store_true", help="the checkpoint is a backward model")
    convert.add_argument("--bptt", type=int, help="BPT3C chunk length (default: 72; an export's own)")
    convert.add_argument("--max-len", type=int, help="BPT3C kept window (default: 1440; an export's own)")
    convert.add_argument(
        "--max-export-bytes",
        metavar="SIZE",
        help=f"the most a fastai export's tensors may hold, e.g. 8G (default: ${MAX_EXPORT_BYTES_ENV}, else 4G)",
    )
    convert.add_argument(
        "--labels",
        metavar="NAMES",
        help="a classifier's class names in its head's order: 'neg,pos', or @FILE (or a file path) with one name per "
        "line; pipeline('text-classification') then returns them",
    )
    convert.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty --out folder (replaces the files the conversion writes, keeps the others)",
    )
    convert.set_defaults(run=_convert_fastai)
    _add_fetch_parser(commands)
    _add_export_onnx_parser(commands)
    env = commands.add_parser(
        "env", help="print versions, the CPU capability and whether bfloat16 is native here (for bug reports)"
    )
    env.set_defaults(run=_env)
    return parser


def _add_fetch_parser(commands) -> None:
    fetch = commands.add_parser(
        "fetch-fastai",
        help="download a pretrained ULMFiT language model (fastai's WikiText-103, or fastai_ulmfit's) and convert it",
        description="Download fastai's pretrained WikiText-103 language model (the archive that "
        "language_model_learner(..., pretrained=True) uses: URLs.WT103_FWD / URLs.WT103_BWD), or a fastai_ulmfit "
        "archive from its URL (SentencePiece models of Wikipedia in 13 languages, e.g. https://bit.ly/ulmfit-dewiki; "
        "redirects are followed), check and extract it safely, and convert it into a Hub-ready folder (model, "
        "tokenizer, model card).",
    )
    fetch.add_argument(
        "name",
        nargs="?",
        metavar="NAME_OR_URL",
        help=f"{' or '.join(sorted(FASTAI_PRETRAINED))}, or the URL of a fastai_ulmfit archive (not needed with "
        "--archive)",
    )
    fetch.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty or new)")
    fetch.add_argument(
        "--direction",
        choices=("fwd", "bwd"),
        help="which model of a fastai_ulmfit archive: forward (fwd, the default) or backward (bwd)",
    )
    fetch.add_argument(
        "--lang",
        metavar="CODE",
        help="language code (de) when the archive records none in model.json or its name (ulmfit-dewiki)",
    )
    fetch.add_argument(
        "--base-url",
        metavar="URL",
        help=f"mirror of fastai's model zoo to download from (default: ${FASTAI_BASE_URL_ENV}, else fastai's URL)",
    )
    fetch.add_argument(
        "--archive",
        metavar="PATH",
        help="use this local copy of the .tgz archive (no download); its layout, WT103 or fastai_ulmfit, is detected",
    )
    fetch.add_argument(
        "--cache-dir", metavar="DIR", help="where downloaded archives are kept (default: $HF_HOME/hf_bpt3c/fastai)"
    )
    fetch.add_argument("--bptt", type=int, default=72, help="BPT3C chunk length (default: 72)")
    fetch.add_argument("--max-len", type=int, default=1440, help="BPT3C kept window (default: 1440)")
    fetch.add_argument(
        "--max-extract-bytes",
        metavar="SIZE",
        help=f"the most the archive may expand to, in all and per file, e.g. 4G (default: ${MAX_ARCHIVE_BYTES_ENV}, "
        "else 2G in all and 1G per file)",
    )
    fetch.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty --out folder (replaces the files the conversion writes, keeps the others)",
    )
    fetch.set_defaults(run=_fetch_fastai)


def _add_export_onnx_parser(commands) -> None:
    export = commands.add_parser(
        "export-onnx",
        help="export a BPT3C classifier (or ensemble) folder to ONNX (chunk step + head) for onnxruntime",
        description="Export a saved AwdLstmForSequenceClassification folder into chunk_step.onnx (embedding + LSTMs "
        "over one chunk, the state in and out) and head.onnx (the classifier head), with its config and tokenizer; "
        "hf_bpt3c.serving.onnx.OnnxClassifier runs them.",
    )
    export.add_argument("model_dir", metavar="MODEL_DIR", help="a save_pretrained folder of the classifier")
    export.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty or a previous export)")
    export.add_argument("--int8", action="store_true", help="also write int8 dynamically quantized graphs")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    export.set_defaults(run=_export_onnx)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hf-bpt3c` with `argv` (default: `sys.argv[1:]`); returns the exit status (2 on bad input, 1 when the
    system refuses: permissions, a full disk). SIGTERM stops the command through its clean-up (temporary folders,
    partial downloads and staging folders are removed), exit status 143."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with terminate_cleanly():
            return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"hf-bpt3c {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"hf-bpt3c {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
