"""ONNX export of the BPT3C classifier, and `OnnxClassifier`, which runs it with ONNX Runtime.

BPT3C reads a document in chunks and carries the LSTM state between them, so the export is two graphs and the
loop stays in Python:

- `chunk_step.onnx`: `input_ids` `(batch, seq)` int64 and the state `h_0, c_0, ..., h_{L-1}, c_{L-1}` (each
  `(batch, layer_size)`) -> `output` `(batch, seq, embedding_size)` (the last layer's outputs) and the new state
  `h_0_out, c_0_out, ...`. Dynamic batch and seq; one ONNX `LSTM` node per layer.
- `head.onnx`: `pooled` `(batch, 3*embedding_size)` -> `logits` `(batch, num_labels)` (BatchNorm/Linear/ReLU).
- with `int8=True`, also `chunk_step.int8.onnx` and `head.int8.onnx` (ONNX Runtime's dynamic quantization: int8
  weights per output channel; the LSTMs become `DynamicQuantizeLSTM`, the head's MatMuls integer MatMuls).
- `config.json`, the tokenizer files when the model folder has a tokenizer, and `onnx_export.json` (the manifest:
  which files, opset, int8) that marks the folder as an export, which a later export may replace.

An ensemble (`AwdLstmEnsembleForSequenceClassification`, or its folder) is exported member by member: `member-0/`,
`member-1/`, ... each hold one member's export as above (graphs, int8 graphs with `int8=True`, its config.json and
its own manifest); the top folder holds the ensemble's config.json, the tokenizer and a manifest whose `ensemble`
entry lists the member folders and the problem type (`{"members": ["member-0", ...], "problem_type": ...}`).
`OnnxClassifier` on such an export runs every member and combines their logits with the PyTorch ensemble's rule
(`mean_prediction_logits`).

`--out` may be new, empty, or a previous export: a folder whose every entry is a regular file listed in its manifest
and named as an export's files are (`*.onnx`, `config.json`, tokenizer files, the core's modules shipped as remote
code), plus, for an ensemble's export, the member folders its manifest lists (`member-<i>`, real folders that are
empty or hold one member's export by the same rule); anything else (a user's file, another subfolder, a link) is
refused and nothing is touched, whatever the manifest says. An existing folder is updated file by file (it may be
a mount point, which cannot be renamed; an existing member folder too), through a hidden staging folder inside it
that is removed on every exit, SIGTERM included. The opset is checked up front (`supported_opsets()`: 7, the first
with the LSTM that ONNX Runtime runs, to the newest torch's exporter writes) and every graph written is loaded back
(with ONNX Runtime, or ONNX's checker without it) before the export replaces anything.

`OnnxClassifier` is `AwdLstmForSequenceClassification.forward` in inference with the graphs for the arithmetic: it
validates and left-justifies the documents with the model's own functions, plans the chunks with
`bpt3c_plan.plan_chunks` and reads them with the model's loop, `bpt3c_plan.run_plan`, whose step runs
`chunk_step.onnx` (torch on CPU for the bookkeeping: plan, state carrying, pooling).

The export uses PyTorch's TorchScript-based exporter (`dynamo=False`): in torch 2.13 the dynamo exporter
specializes the sequence length of `torch.lstm` (its graph runs only at the example's length).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..convert.safety import terminate_cleanly
from ..models.awd_lstm import modeling_awd_lstm
from ..models.awd_lstm.bpt3c_plan import ConcatPool, plan_chunks, run_plan, shift_right
from ..models.awd_lstm.configuration_awd_lstm import AwdLstmConfig
from ..models.awd_lstm.configuration_awd_lstm_ensemble import AwdLstmEnsembleConfig
from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForSequenceClassification, justified_documents
from ..models.awd_lstm.modeling_awd_lstm_ensemble import (
    AwdLstmEnsembleForSequenceClassification,
    mean_prediction_logits,
    problem_type_of,
)

MANIFEST = "onnx_export.json"
STEP_FILE, HEAD_FILE = "chunk_step.onnx", "head.onnx"
DEFAULT_OPSET = 17
MIN_OPSET = 7  # ONNX Runtime's oldest supported opset, and the LSTM-7 it runs (opsets 5-6 export unloadable graphs)
STAGING_PREFIX = ".onnx-export-"
# The names an export writes: graphs, config, manifest, the files of a tokenizer's save_pretrained, and the core's
# modules that config.json and the tokenizer ship as remote code (`CORE_MODULES`).
CORE_MODULES = frozenset(
    path.name for path in Path(modeling_awd_lstm.__file__).parent.glob("*.py") if path.name != "__init__.py"
)
EXPORT_FILE = re.compile(
    r"^(?:[\w.-]+\.onnx|config\.json|onnx_export\.json|tokenizer[\w.-]*\.json|special_tokens_map\.json|"
    r"added_tokens\.json|chat_template\.jinja|vocab\.(?:json|txt)|merges\.txt|[\w.-]+\.model)$"
)
# The folders of an ensemble's export, one per member (`member-0`, `member-1`, ...), and its problem types.
MEMBER_DIR = re.compile(r"^member-(?:0|[1-9][0-9]{0,3})$")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


def supported_opsets() -> range:
    """The opsets `export_onnx` accepts: `MIN_OPSET` to the newest torch's TorchScript exporter writes."""
    try:
        from torch.onnx import _constants

        newest = int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError, TypeError, ValueError):
        newest = 20
    return range(MIN_OPSET, newest + 1)


def check_opset(opset) -> int:
    """`opset` if it is an int in `supported_opsets()`; `ValueError` naming the range otherwise."""
    opsets = supported_opsets()
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in opsets:
        raise ValueError(
            f"opset (--opset) must be an int from {opsets.start} to {opsets.stop - 1} (the ONNX LSTM that ONNX Runtime "
            f"runs, up to the newest torch's exporter writes; default {DEFAULT_OPSET}), got {opset!r}"
        )
    return opset


def _require(module: str):
    """Import an optional dependency, or an ImportError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{module} is needed for ONNX export and inference: pip install 'hf_bpt3c[onnx]'") from error


def state_names(num_layers: int, suffix: str = "") -> list[str]:
    """`["h_0", "c_0", "h_1", ...]` (+ suffix): the state inputs (outputs with `"_out"`) of `chunk_step.onnx`."""
    return [f"{kind}_{i}{suffix}" for i in range(num_layers) for kind in ("h", "c")]


def int8_name(file: str) -> str:
    return file.replace(".onnx", ".int8.onnx")


# ----------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------


class ChunkStep(nn.Module):
    """One BPT3C chunk: `(input_ids (batch, seq), h_0, c_0, ...)` -> `(output (batch, seq, emb), h_0, c_0, ...)`."""

    def __init__(self, model: AwdLstmForSequenceClassification):
        super().__init__()
        self.awd_lstm = model.awd_lstm

    def forward(self, input_ids: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pairs = tuple(zip(state[0::2], state[1::2]))
        out, new_state, _ = self.awd_lstm.run_layers(self.awd_lstm.embed(input_ids=input_ids), pairs)
        return (out, *(t for pair in new_state for t in pair))


def export_onnx(
    model_or_dir: AwdLstmForSequenceClassification | AwdLstmEnsembleForSequenceClassification | str | os.PathLike,
    out_dir: str | os.PathLike,
    int8: bool = False,
    opset: int = DEFAULT_OPSET,
    tokenizer=None,
) -> Path:
    """Export a BPT3C classifier or an ensemble of them (a model, or a `save_pretrained` folder) into `out_dir`;
    returns its path.

    Writes the files listed in the module docstring into a staging folder (an ensemble: one member folder each),
    loads every graph back, then moves them into place. `out_dir` must be new, empty or a previous export
    (anything else is refused with a ValueError, and nothing is written); opset: an int in `supported_opsets()`
    (7 to 23 with torch 2.13).
    tokenizer: saved with the graphs (default: the folder's tokenizer, if it has one).
    """
    out_dir = Path(out_dir)
    opset = check_opset(opset)
    if not isinstance(int8, bool):
        raise TypeError(f"int8 must be True or False, got {int8!r}")
    previous = _previous_export(out_dir)
    _require("onnx")
    if int8:
        _require("onnxruntime")
    model, tokenizer = _load_for_export(model_or_dir, tokenizer)
    with terminate_cleanly():
        if previous is None:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.exporting-", dir=out_dir.parent))
        else:
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
        try:
            if isinstance(model, AwdLstmEnsembleForSequenceClassification):
                members = []
                for i, member in enumerate(model.members):
                    name = f"member-{i}"
                    (staging / name).mkdir()
                    _write_checked_export(member, None, staging / name, int8, opset)
                    members.append(name)
                model.config.save_pretrained(staging)
                if tokenizer is not None:
                    tokenizer.save_pretrained(staging)
                files = sorted(path.name for path in staging.iterdir() if path.name not in members)
                ensemble = {"members": members, "problem_type": problem_type_of(model.config)}
                manifest = _manifest(opset, int8, files, ensemble)
                (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            else:
                manifest = _write_checked_export(model, tokenizer, staging, int8, opset)
            if previous is None:
                os.replace(staging, out_dir)
            else:
                _update_files(staging, out_dir, manifest["files"], previous)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _manifest(opset: int, int8: bool, files: list[str], ensemble: dict | None = None) -> dict:
    manifest = {"format": 1, "opset": opset, "int8": int8, "files": sorted({*files, MANIFEST})}
    return manifest if ensemble is None else {**manifest, "ensemble": ensemble}


def _write_checked_export(model, tokenizer, folder: Path, int8: bool, opset: int) -> dict:
    """One classifier's export into `folder`: graphs, config, tokenizer, every graph loaded back, and its manifest
    (returned)."""
    files = _write_export(model, tokenizer, folder, int8, opset)
    _check_graphs_load(folder, files, opset)
    manifest = _manifest(opset, int8, files)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(folder: Path) -> dict:
    """The export's `onnx_export.json`: format 1, an int opset, a bool int8 and a list of plain file names, and for
    an ensemble's export an `ensemble` entry (`members`: distinct `member-<i>` folder names, `problem_type`: one of
    `PROBLEM_TYPES`); `ValueError` naming the file for anything else (a hand-edited or forged manifest)."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable export manifest: {err}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != 1
        or not isinstance(manifest.get("int8"), bool)
        or isinstance(manifest.get("opset"), bool)
        or not isinstance(manifest.get("opset"), int)
        or not isinstance(files, list)
        or not all(isinstance(f, str) and f and "/" not in f and "\\" not in f and f not in (".", "..") for f in files)
    ):
        raise ValueError(
            f"{path} is not an export manifest of hf_bpt3c (format 1: opset, int8 and the list of the export's files)"
        )
    if "ensemble" in manifest:
        ensemble = manifest["ensemble"]
        members = ensemble.get("members") if isinstance(ensemble, dict) else None
        if (
            not isinstance(ensemble, dict)
            or not isinstance(members, list)
            or not members
            or not all(isinstance(m, str) and MEMBER_DIR.match(m) for m in members)
            or len(set(members)) != len(members)
            or set(members) & set(files)
            or ensemble.get("problem_type") not in PROBLEM_TYPES
        ):
            raise ValueError(
                f"{path} is not an export manifest of hf_bpt3c: its ensemble entry must list distinct member "
                f"folders (member-0, member-1, ...) and a problem type among {list(PROBLEM_TYPES)}"
            )
    return manifest


def member_folders(manifest: dict) -> list[str]:
    """The member folders of an ensemble's export (in the members' order), [] for one classifier's export."""
    return list(manifest["ensemble"]["members"]) if "ensemble" in manifest else []


def _previous_export(out_dir: Path) -> list[str] | None:
    """None when `out_dir` does not exist yet; else the entries of the export it holds (empty for an empty folder):
    its files, and an ensemble's member folders.
    Refuses (`ValueError`, nothing touched) a file in place of the folder and a folder that is not an export: any
    entry that is not a regular file listed in its manifest and named as an export file (`EXPORT_FILE`), or, for
    an ensemble's export, a member folder its manifest lists (`_foreign_entries`). A staging folder left by a
    killed export (`STAGING_PREFIX`, export files and member folders of them only) is removed."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return None
    if not out_dir.is_dir():
        raise ValueError(f"out_dir (--out) {out_dir} is a file, not a folder")
    entries = sorted(out_dir.iterdir())
    stale = [e for e in entries if e.name.startswith(STAGING_PREFIX) and _only_export_files(e)]
    entries = [e for e in entries if e not in stale]
    if not entries:
        _remove(stale)
        return []
    listed = (out_dir / MANIFEST).is_file()
    others = _foreign_entries(out_dir, entries, members_allowed=True) if listed else []
    if not listed or others:
        raise ValueError(
            f"out_dir (--out) {out_dir} is not empty and not a previous ONNX export (it holds {others[:5] or 'no '}"
            f"{'' if others else MANIFEST}); choose a new or empty folder"
        )
    _remove(stale)
    return [e.name for e in entries]


def _foreign_entries(folder: Path, entries: list[Path], members_allowed: bool) -> list[str]:
    """The entries of an export `folder` (which has a manifest) that an export did not write: anything but a
    regular file listed in its manifest and named as an export file, or, with `members_allowed` and an ensemble's
    manifest, a real member folder the manifest lists that is empty or passes the same check (with no members of
    its own)."""
    manifest = read_manifest(folder)
    listed = set(manifest["files"])
    members = set(member_folders(manifest))
    if members and not members_allowed:
        raise ValueError(f"{folder / MANIFEST} is not an export manifest of hf_bpt3c: a member lists members")
    others = []
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink() and entry.name in members:
            if _is_member_export(entry):
                continue
        elif not entry.is_symlink() and entry.is_file() and entry.name in listed and is_export_file(entry.name):
            continue
        others.append(entry.name + ("/" if entry.is_dir() and not entry.is_symlink() else ""))
    return others


def _is_member_export(folder: Path) -> bool:
    """Whether a member folder of an ensemble's export is empty or holds one classifier's export only."""
    entries = sorted(folder.iterdir())
    if not entries:
        return True
    if not (folder / MANIFEST).is_file() or (folder / MANIFEST).is_symlink():
        return False
    return not _foreign_entries(folder, entries, members_allowed=False)


def is_export_file(name: str) -> bool:
    """Whether `name` is one an export writes (`EXPORT_FILE` or a core module): the only names a previous export
    may hold."""
    return bool(EXPORT_FILE.match(name)) or name in CORE_MODULES


def _only_export_files(folder: Path, member_depth: int = 1) -> bool:
    """Whether `folder` is a real folder holding regular export files only, and (down to `member_depth` levels)
    member folders (`MEMBER_DIR`) of them: what a staging folder holds."""
    return (
        folder.is_dir()
        and not folder.is_symlink()
        and all(
            (e.is_file() and not e.is_symlink() and is_export_file(e.name))
            or (member_depth > 0 and MEMBER_DIR.match(e.name) and _only_export_files(e, member_depth - 1))
            for e in folder.iterdir()
        )
    )


def _remove(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _write_json_atomically(path: Path, data: dict) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2) + "\n")
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _update_files(staging: Path, out_dir: Path, files: list[str], previous: list[str]) -> None:
    """Move the export's `files` from `staging` (inside `out_dir`) into `out_dir` one by one (renames within the
    folder: `out_dir` itself is never renamed, so it may be a mount point), then remove the entries of the previous
    export that the new one does not have. The manifest is written first listing both sets and last listing the
    new one, so that an export killed at any point leaves a folder the next export accepts.

    An ensemble's member folders: a new one is moved in with one rename, one the previous export had is updated in
    the same way (its own manifest first listing both sets, last the new one), one the new export does not have is
    emptied (its manifest last) and removed; the first manifest lists the member folders of both."""
    manifest = json.loads((staging / MANIFEST).read_text(encoding="utf-8"))
    old = read_manifest(out_dir) if MANIFEST in previous else {"files": []}
    members = member_folders(manifest)
    old_members = [name for name in member_folders(old) if name in previous]
    union = {**manifest, "files": sorted(set(files) | {name for name in previous if name not in old_members})}
    if members or old_members:
        problem_type = (manifest.get("ensemble") or old["ensemble"])["problem_type"]
        union["ensemble"] = {"members": _member_order({*members, *old_members}), "problem_type": problem_type}
    _write_json_atomically(out_dir / MANIFEST, union)
    for name in files:
        if name != MANIFEST:
            os.replace(staging / name, out_dir / name)
    for name in members:
        target = out_dir / name
        member_previous = sorted(e.name for e in target.iterdir()) if name in old_members else []
        if member_previous:
            member_files = json.loads((staging / name / MANIFEST).read_text(encoding="utf-8"))["files"]
            _update_files(staging / name, target, member_files, member_previous)
        else:
            if name in old_members:
                target.rmdir()  # an empty member folder (left by an export killed while removing it)
            os.replace(staging / name, target)
    for name in sorted(set(previous) - set(files) - set(members)):
        if name in old_members:
            _remove_member(out_dir / name)
        else:
            (out_dir / name).unlink(missing_ok=True)
    os.replace(staging / MANIFEST, out_dir / MANIFEST)


def _member_order(names) -> list[str]:
    return sorted(names, key=lambda name: int(name.split("-")[1]))


def _remove_member(folder: Path) -> None:
    """Remove a member folder of a previous export (checked: its export's files only), its manifest last."""
    for entry in sorted(folder.iterdir()):
        if entry.name != MANIFEST:
            entry.unlink()
    (folder / MANIFEST).unlink(missing_ok=True)
    folder.rmdir()


def _check_graphs_load(folder: Path, files: list[str], opset: int) -> None:
    """Load every `.onnx` file of `folder` back (with ONNX Runtime; ONNX's checker when ONNX Runtime is not
    installed): `ValueError` naming the graph and the opset when one would not run."""
    import onnx

    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        ort = None
    for name in files:
        if not name.endswith(".onnx"):
            continue
        try:
            if ort is None:
                onnx.checker.check_model(str(folder / name))
            else:  # what OnnxClassifier does (the checker is stricter than ONNX Runtime with old opsets' int8 graphs)
                options = ort.SessionOptions()
                options.log_severity_level = 3
                ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnx and onnxruntime raise their own exception types
            reason = " ".join(str(err).split())[:300]
            raise ValueError(
                f"the exported {name} (opset {opset}) does not load: {reason}; export with another --opset "
                f"(default {DEFAULT_OPSET})"
            ) from None


def _load_for_export(model_or_dir, tokenizer) -> tuple[nn.Module, object]:
    """A float32 eval copy of the classifier or ensemble (LSTM products in float32), and the tokenizer to save (or
    None)."""
    if isinstance(model_or_dir, (AwdLstmForSequenceClassification, AwdLstmEnsembleForSequenceClassification)):
        model = copy.deepcopy(model_or_dir)
    elif isinstance(model_or_dir, (str, os.PathLike)):
        folder = Path(model_or_dir)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"model_or_dir (MODEL_DIR) {folder} has no config.json")
        names, config = _weight_names(folder), _config_dict(folder)
        if config.get("model_type") == AwdLstmEnsembleConfig.model_type:
            members = config.get("members")
            for i in range(len(members) if names is not None and isinstance(members, list) else 0):
                if not any(name.startswith(f"members.{i}.classifier.") for name in names):
                    raise ValueError(
                        f"model_or_dir (MODEL_DIR) {folder} is an ensemble whose member {i} has no classifier head "
                        f"(no members.{i}.classifier.* weights): save the ensemble again from its members"
                    )
            model = AwdLstmEnsembleForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
        elif names is not None and not any(name.startswith("classifier.") for name in names):
            raise ValueError(
                f"model_or_dir (MODEL_DIR) {folder} holds no classifier head (no classifier.* weights): it is a "
                "language model or an encoder. Fine-tune a classifier on it first (examples/run_classification.py); "
                "only a classifier is exported"
            )
        else:
            model = AwdLstmForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
        if tokenizer is None and any((folder / f).is_file() for f in ("tokenizer_config.json", "tokenizer.json")):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder)
    else:
        raise TypeError(
            "model_or_dir must be an AwdLstmForSequenceClassification, an AwdLstmEnsembleForSequenceClassification "
            f"or a folder path, got {type(model_or_dir).__name__}"
        )
    members = model.members if isinstance(model, AwdLstmEnsembleForSequenceClassification) else [model]
    for member in members:
        member.config.compute_dtype = "float32"
    return model.float().eval(), tokenizer


def _config_dict(folder: Path) -> dict:
    """A folder's config.json as a dict ({} if it cannot be read: loading the model says why)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def _weight_names(folder: Path) -> set[str] | None:
    """The tensor names of a folder's safetensors weights (one file or an index of shards), read without loading
    them; None when the folder has neither (older formats are not inspected)."""
    index, single = folder / "model.safetensors.index.json", folder / "model.safetensors"
    try:
        if index.is_file():
            return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
        if single.is_file():
            from safetensors import safe_open

            with safe_open(str(single), framework="pt") as weights:
                return set(weights.keys())
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"model_or_dir (MODEL_DIR) {folder}: its weights cannot be read: {err}") from None
    except Exception as err:  # safetensors' own error type
        raise ValueError(f"model_or_dir (MODEL_DIR) {folder}: its weights file is damaged: {err}") from None
    return None


def _write_export(model, tokenizer, folder: Path, int8: bool, opset: int) -> list[str]:
    """Write the graphs, config and tokenizer into `folder`; returns the names of the files written."""
    config = model.config
    batch, seq = 2, 7  # example shapes, neither 1 nor equal to another size
    ids = torch.randint(0, config.vocab_size, (batch, seq))
    state = [torch.zeros(batch, size) for _, size in config.layer_sizes for _ in range(2)]
    by_batch = {0: "batch"}
    step_inputs = {"input_ids": {0: "batch", 1: "seq"}} | dict.fromkeys(state_names(len(config.layer_sizes)), by_batch)
    step_outputs = {"output": {0: "batch", 1: "seq"}} | dict.fromkeys(
        state_names(len(config.layer_sizes), "_out"), by_batch
    )
    _export(ChunkStep(model).eval(), (ids, *state), folder / STEP_FILE, step_inputs, step_outputs, opset)
    pooled = torch.randn(batch, 3 * config.embedding_size)
    _export(model.classifier, (pooled,), folder / HEAD_FILE, {"pooled": by_batch}, {"logits": by_batch}, opset)
    if int8:
        for file in (STEP_FILE, HEAD_FILE):
            quantize_int8(folder / file, folder / int8_name(file))
    config.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return sorted(path.name for path in folder.iterdir())


def _export(module: nn.Module, args: tuple, path: Path, inputs: dict, outputs: dict, opset: int) -> None:
    """`torch.onnx.export` (TorchScript exporter) of `module` in eval mode; inputs/outputs: name -> dynamic axes."""
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=inputs | outputs,
        )


def quantize_int8(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization (weights per output channel, activations per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():  # its "consider pre-processing" advice: shape inference adds nothing to these static graphs
        quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8)


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' and the quantizer's warnings (deprecation, LSTM batch-size advice, pre-processing)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


# ----------------------------------------------------------------------------------------------------------------
# Runner
# ----------------------------------------------------------------------------------------------------------------


class OnnxClassifier:
    """Run an export of `export_onnx` with ONNX Runtime: `runner(input_ids, attention_mask=None)` -> logits.

    folder: the export; int8: use the quantized graphs (exported with `int8=True`); providers: ONNX Runtime
    execution providers (default: CPU); intra_op_num_threads: threads per graph call (default: ONNX Runtime's).

    An ensemble's export is run member by member (`members`: one `OnnxClassifier` per member folder) and the
    members' logits combined as `AwdLstmEnsembleForSequenceClassification` does (`mean_prediction_logits` with
    the manifest's problem type); `config` is then the ensemble's `AwdLstmEnsembleConfig`.
    """

    def __init__(self, folder, int8: bool = False, providers=None, intra_op_num_threads: int | None = None):
        ort = _require("onnxruntime")
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"folder {self.folder} is not an ONNX export of hf_bpt3c (no {MANIFEST})")
        manifest = read_manifest(self.folder)
        if int8 and not manifest["int8"]:
            raise ValueError(f"int8=True but {self.folder} was exported without int8 (export_onnx(..., int8=True))")
        self._tokenizer = None
        self.members: list[OnnxClassifier] | None = None
        if "ensemble" in manifest:
            self._load_members(manifest, int8, providers, intra_op_num_threads)
            return
        self.config = AwdLstmConfig.from_pretrained(self.folder)
        for file in (STEP_FILE, HEAD_FILE):
            path = self.folder / (int8_name(file) if int8 else file)
            if not path.is_file():
                raise FileNotFoundError(f"the export {self.folder} lacks {path.name}: export it again")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_num_threads is not None:
            options.intra_op_num_threads = intra_op_num_threads
        providers = providers or ["CPUExecutionProvider"]

        def session(file: str):
            path = self.folder / (int8_name(file) if int8 else file)
            try:
                return ort.InferenceSession(str(path), options, providers=providers)
            except Exception as err:  # ONNX Runtime's own exception types
                reason = " ".join(str(err).split())[:300]
                raise ValueError(f"{path} is not a graph ONNX Runtime can load: {reason}") from None

        self.step, self.head = session(STEP_FILE), session(HEAD_FILE)
        self.state_names = state_names(self.config.num_hidden_layers)
        self._check_graphs_match_config()

    def _load_members(self, manifest: dict, int8: bool, providers, intra_op_num_threads: int | None) -> None:
        """An ensemble's export: the ensemble's config, and one runner per member folder, checked against it."""
        where = self.folder / "config.json"
        self.config = AwdLstmEnsembleConfig.from_pretrained(self.folder)
        self.problem_type = manifest["ensemble"]["problem_type"]
        if self.problem_type != problem_type_of(self.config):
            raise ValueError(
                f"{self.folder / MANIFEST} gives the problem type {self.problem_type!r} but {where} "
                f"{problem_type_of(self.config)!r}: the export was altered; export it again"
            )
        names = member_folders(manifest)
        if len(names) != len(self.config.members):
            raise ValueError(
                f"{where} describes {len(self.config.members)} members but {self.folder / MANIFEST} lists "
                f"{len(names)}: the export was altered; export it again"
            )
        self.members = []
        for name in names:
            folder = self.folder / name
            if not folder.is_dir() or not (folder / MANIFEST).is_file():
                raise FileNotFoundError(f"the export {self.folder} lacks its member folder {name}: export it again")
            if "ensemble" in read_manifest(folder):
                raise ValueError(f"{folder / MANIFEST} is not an export manifest of hf_bpt3c: a member lists members")
            member = OnnxClassifier(folder, int8=int8, providers=providers, intra_op_num_threads=intra_op_num_threads)
            config = member.config
            if dict(config.id2label) != dict(self.config.id2label) or config.problem_type != self.config.problem_type:
                raise ValueError(
                    f"{folder / 'config.json'} has the labels {config.id2label} ({config.problem_type}), the ensemble "
                    f"({where}) {self.config.id2label} ({self.config.problem_type}): the export was altered; export "
                    "it again"
                )
            self.members.append(member)

    def _check_graphs_match_config(self) -> None:
        """The export's config.json must describe its graphs: the state inputs of chunk_step.onnx (one `h`/`c` pair
        per layer, of the layer's size) and the outputs of head.onnx (`num_labels`, which `id2label` names).
        `ValueError` for an altered export (a tampered `num_labels`/`id2label` would cut or overrun the labels)."""
        config, where = self.config, f"{self.folder / 'config.json'}"
        inputs = {i.name: i.shape for i in self.step.get_inputs()}
        expected = dict(zip(self.state_names, (size for _, size in config.layer_sizes for _ in range(2))))
        if set(inputs) != {"input_ids", *expected}:
            raise ValueError(
                f"{where} describes {config.num_hidden_layers} layers but {STEP_FILE} takes {sorted(inputs)}: the "
                "export was altered; export it again"
            )
        for name, size in expected.items():
            if inputs[name][-1] != size:
                raise ValueError(f"{where} gives {name} size {size} but {STEP_FILE} takes {inputs[name][-1]}")
        outputs = self.head.get_outputs()[0].shape
        if outputs[-1] != config.num_labels:
            raise ValueError(
                f"{where} names {config.num_labels} classes (num_labels/id2label) but {HEAD_FILE} outputs "
                f"{outputs[-1]}: the export was altered; export it again"
            )

    def __call__(self, input_ids, attention_mask=None) -> np.ndarray:
        """input_ids: `(batch, seq)` integer array; attention_mask: `(batch, seq)`, 1 token / 0 padding (left or
        right; default: `config.pad_token_id` marks padding). Returns float32 logits `(batch, num_labels)`."""
        if self.members is not None:  # an ensemble: the members' logits, combined as the PyTorch ensemble does
            member_logits = [torch.from_numpy(member(input_ids, attention_mask)) for member in self.members]
            return mean_prediction_logits(member_logits, self.problem_type).numpy()
        ids = _as_tensor(input_ids, "input_ids", integer=True)
        mask = None if attention_mask is None else _as_tensor(attention_mask, "attention_mask")
        tokens, lengths = justified_documents(self.config, ids, mask)  # as the PyTorch classifier
        pooled = self.encode_documents(tokens, lengths)
        return self.head.run(["logits"], {"pooled": pooled})[0]

    def encode_documents(self, tokens: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        """BPT3C over left-justified `tokens` `(batch, seq)` of `lengths` `(batch,)`: the concat-pooled features
        `(batch, 3*embedding_size)` float32, as `AwdLstmForSequenceClassification.encode_documents` in eval."""
        if self.members is not None:
            raise TypeError(
                f"{self.folder} is an ensemble's export: each member encodes the documents (runner.members[i])"
            )
        config = self.config
        plan = plan_chunks(lengths, config.bptt, config.max_len, False, False, config.classifier_pooling)
        tokens = shift_right(tokens[plan.order], plan.first, plan.lengths)  # longest first
        batch = tokens.size(0)
        state = tuple((torch.zeros(batch, size), torch.zeros(batch, size)) for _, size in config.layer_sizes)
        pool = ConcatPool(batch, config.embedding_size, torch.empty(0))
        return run_plan(plan, tokens, state, self._run_step, pool).numpy()

    def _run_step(self, chunk, chunk_tokens: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        """`run_plan`'s step: the chunk through `chunk_step.onnx`; outputs `(rows, chunk, emb)` and the new state."""
        feeds = {"input_ids": np.ascontiguousarray(chunk_tokens.numpy())}
        feeds |= {name: s.numpy() for name, s in zip(self.state_names, (t for pair in state for t in pair))}
        out, *new_state = (torch.from_numpy(a) for a in self.step.run(None, feeds))
        return out, tuple(zip(new_state[0::2], new_state[1::2]))

    @property
    def tokenizer(self):
        """The export's tokenizer (ValueError if it has none)."""
        if self._tokenizer is None:
            if not (self.folder / "tokenizer_config.json").is_file():
                raise ValueError(f"{self.folder} holds no tokenizer: pass token ids to the runner instead of texts")
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.folder)
        return self._tokenizer

    def predict(self, texts: str | list[str], top_k: int | None = 1, batch_size: int = 16) -> list:
        """Classify texts like `pipeline("text-classification")`: per text `{"label", "score"}` (top_k=1), or the
        `top_k` best (None: all) as a list of them. Scores: softmax, sigmoid for multi-label / one label, the raw
        value for regression."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not all(isinstance(text, str) for text in texts):
            raise TypeError("texts must be a str or a list of str")
        logits = np.concatenate([self._logits_of(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])
        problem_type = self.config.problem_type
        if problem_type == "regression":  # as transformers' text-classification pipeline: the raw value
            scores = logits
        elif problem_type == "multi_label_classification" or self.config.num_labels == 1:
            scores = 1 / (1 + np.exp(-logits))
        else:
            scores = _softmax(logits)
        id2label = self.config.id2label
        results = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[: top_k if top_k is not None else len(row)]
            ranked = [{"label": id2label[int(i)], "score": float(row[i])} for i in best]
            results.append(ranked[0] if top_k == 1 else ranked)
        return results

    def _logits_of(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer(texts, padding=True, return_tensors="np")
        return self(encoded["input_ids"], encoded["attention_mask"])


def _as_tensor(value, name: str, integer: bool = False) -> torch.Tensor:
    """A numpy array (or nested list) as a CPU tensor; integer ids as int64, else a TypeError naming `name`."""
    if isinstance(value, torch.Tensor):
        value = value.cpu().numpy()
    array = np.asarray(value)
    if integer and array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array of shape (batch, seq), got dtype {array.dtype}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array of shape (batch, seq), got dtype {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array.astype(np.int64) if integer else array))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


__all__ = ["export_onnx", "OnnxClassifier", "quantize_int8"]
