"""Converting fastai's exported learners (`learn.export()`'s `export.pkl`, the `model.pkl` of fastai repositories on
the Hub) without running their pickle.

An export is a `torch.save` of the whole `Learner` (torch's zip format: `<name>/data.pkl` and the tensors' bytes in
`<name>/data/<key>`; torch's legacy single-stream format is read as well). Unpickling it normally imports fastai and
runs whatever the pickle asks for. Here it is read by `InertUnpickler`, whose `find_class` is the only way a pickle
can reach Python code:

- the classes and functions of fastai and the packages its exports reference (fastcore, fasttransform, plum,
  spaCy, SentencePiece, pandas, `torch.nn.modules`, ...; `INERT_PACKAGES` and `INERT_NAMES`) become *inert
  placeholders*: a class made here that records the global's name and whatever REDUCE, NEWOBJ, BUILD, SETITEMS and
  APPENDS give it, and does nothing else; the real global is never imported, looked up or called;
- plain containers and scalars (`list`, `tuple`, `set`, `dict`, `OrderedDict`, `Counter`, `defaultdict`, `slice`,
  `int`, `float`, `str`, `bytes`, `_codecs.encode(str, "latin1")`) are built by small functions of this module that
  accept plain data only;
- tensors are rebuilt only through `torch._utils._rebuild_tensor_v2`, `_rebuild_tensor`, `_rebuild_parameter`,
  `_rebuild_parameter_with_state` and `torch._tensor._rebuild_from_type_v2` (their stand-ins here), over storages
  that `persistent_load` reads from the file: sizes bounded, the bytes of each storage equal to what the pickle
  declares, and every view's offset, shape and stride checked against its storage before a tensor is made;
- `builtins.getattr` only as cloudpickle writes it, `getattr(<placeholder>, "<name>")`, which gives another
  placeholder; `builtins.print` (the learner's `logger`) only as an inert value;
- anything else (`os.system`, `subprocess.*`, `builtins.eval`, `importlib.*`, `torch.load`, other numpy
  functions, ...) is refused with a `ValueError` naming the global: nothing was run.

From the inert object graph `read_fastai_export` takes the model's weights (the placeholders' `_parameters`,
`_buffers` and `_modules`, as `state_dict()` would list them), the vocabulary (`Numericalize.vocab`), a classifier's
class names (`Categorize.vocab`), `SentenceEncoder`'s `bptt`/`max_len` (or the LM loader's `seq_len`), whether the
text is reversed (`reverse_text`, fastai's `backwards=True`) and the tokenizer (spaCy words or SentencePiece);
`convert_fastai_export` hands them to `convert_fastai`, which checks and writes the folder.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import re
import struct
import tempfile
import zipfile
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from ..models.awd_lstm.safe_pickle import DataOnlyUnpickler
from .from_fastai import FastaiConversion, _check_out_dir, convert_fastai
from .safe_load import _regular_file
from .safety import GIB, MIB, env_size, human, parse_size

MAX_EXPORT_BYTES_ENV = "HF_BPT3C_MAX_EXPORT_BYTES"
DEFAULT_MAX_EXPORT_BYTES = 4 * GIB  # an export of fastai's WT103-sized classifier is about 0.5 GB
MAX_PICKLE_BYTES = 512 * MIB  # data.pkl: a 60k-token vocabulary and its counter are a few MB
MAX_TENSOR_DIMS = 8
MAX_MODULE_DEPTH = 32
MAX_GRAPH_OBJECTS = 2_000_000  # objects visited when looking for the vocabulary and settings

# ----------------------------------------------------------------------------------------------------------------
# The allow-list
# ----------------------------------------------------------------------------------------------------------------

# Packages whose classes and functions become inert placeholders (never imported). fastai 2.8's exports of text
# learners reference these: fastai/fastcore/fasttransform (the learner, data pipeline, callbacks, metrics), plum
# (fasttransform's dispatch), spaCy and its config library confection (the word tokenizer; thinc and srsly are
# spaCy's own), sentencepiece (the SentencePiece tokenizer's processor), pandas and pyarrow (a DataFrame's columns;
# pandas 3 keeps strings in pyarrow arrays), cloudpickle (fastai's default `pickle_module` for `export`:
# `_builtin_type("MethodType")` for bound methods), sklearn.metrics (fastai's sklearn-based metrics), and
# torch.nn.modules (the layers).
INERT_PACKAGES = (
    "fastai",
    "fastcore",
    "fasttransform",
    "fastprogress",
    "plum",
    "spacy",
    "thinc",
    "confection",
    "srsly",
    "sentencepiece",
    "pandas",
    "pyarrow",
    "cloudpickle",
    "sklearn.metrics",
    "torch.nn.modules",
)
# Single globals of other modules that fastai exports reference; also inert placeholders.
INERT_NAMES = frozenset(
    {
        "inspect.Signature",
        "inspect.Parameter",
        "inspect._ParameterKind",
        "inspect._empty",
        "pathlib.Path",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "pathlib.PurePath",
        "pathlib.PurePosixPath",
        "pathlib.PureWindowsPath",
        "re._compile",  # spaCy's tokenizer patterns: never compiled here
        "random.Random",  # a data loader's random state
        "numpy.ndarray",  # numpy arrays and scalars in the data loaders' state: never rebuilt here
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "torch.device",
        "typing.Any",
        "typing.Union",
        "typing.Optional",
        "typing.Callable",
    }
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")

# torch's storage classes (the persistent ids name the dtype by them) and their element types.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
_TORCH_DTYPES = {
    name: getattr(torch, name)
    for name in ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")
}


class ExportError(ValueError):
    """A fastai export that cannot be read: damaged, too large, or not what fastai writes."""


class RefusedGlobal(ExportError):
    """The export asks for a global that is not allowed (or gives an allowed one arguments it does not accept)."""


class Inert:
    """Stand-in for an object of a global that is never imported: `inert_name` (on the class) is the global's
    dotted name; an instance records what the pickle gave it: `args`/`kwargs` (REDUCE, NEWOBJ), `state` (BUILD),
    `items` (SETITEMS) and `elements` (APPENDS). Calling one (a pickled call of a placeholder) gives an `InertCall`
    recording the call; nothing is run."""

    __slots__ = ("args", "kwargs", "state", "items", "elements")
    inert_name = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.args, self.kwargs, self.state, self.items, self.elements = args, kwargs, None, {}, []
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        self.state = state

    def __setitem__(self, key, value) -> None:
        self.items[key] = value

    def append(self, value) -> None:
        self.elements.append(value)

    def extend(self, values) -> None:
        self.elements.extend(values)

    def __call__(self, *args, **kwargs):
        return InertCall(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<inert {self.inert_name}>"

    @property
    def attributes(self) -> dict:
        """The object's attributes as BUILD gave them (its `__dict__`), or `{}`."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict | type(None)):
            state = state[0]  # (state, slotstate)
        return state if isinstance(state, dict) else {}


class InertCall(Inert):
    """A pickled call of a placeholder instance: `args` is `(callee, call_args, call_kwargs)`."""

    __slots__ = ()
    inert_name = "<call>"


class InertAttribute(Inert):
    """`getattr(placeholder, name)` as cloudpickle writes a bound method: `args` is `(placeholder, name)`."""

    __slots__ = ()
    inert_name = "<attribute>"


def inert_name(obj) -> str | None:
    """The global name of a placeholder class or instance (`"fastai.text.data.Numericalize"`), else None."""
    if isinstance(obj, type) and issubclass(obj, Inert):
        return obj.inert_name
    if isinstance(obj, Inert):
        return type(obj).inert_name
    return None


def is_inert_instance(obj, *names: str) -> bool:
    """True for a placeholder instance of one of `names` (any placeholder instance without names)."""
    return isinstance(obj, Inert) and (not names or type(obj).inert_name in names)


def _show(value, limit: int = 60) -> str:
    """An untrusted value, short, for a message: scalars and short tuples of them shown, anything else by its type
    (never a full `repr`, which could be huge or recurse)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a very large int"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)[:limit]
    if isinstance(value, str | bytes):
        return repr(value[:limit])[: limit + 3]
    if isinstance(value, tuple | list) and len(value) <= 8 and all(_plain_number(v) for v in value):
        return repr(value)[:limit]
    return f"a {inert_name(value) or type(value).__name__}"


def _plain_number(value) -> bool:
    return value is None or (isinstance(value, bool | int | float) and abs(value) < 1 << 64)


class _Refusal(Exception):
    """Raised inside the unpickler; turned into a `RefusedGlobal` naming the file."""


class _Sealed:
    """An object of this module that a pickle can hold but not change: BUILD (which calls `__setstate__`, else sets
    attributes) is refused."""

    __slots__ = ()

    def __setstate__(self, state):
        raise _Refusal(f"the pickle tries to change {self!r}")

    def __setattr__(self, name, value):
        raise _Refusal(f"the pickle tries to change {self!r}")

    def __repr__(self) -> str:
        return f"a {type(self).__name__.strip('_')}"


class _Safe(_Sealed):
    """A function of this module that a pickle may call (a safe constructor, a tensor rebuild), sealed so that a
    pickle cannot change it for later loads."""

    __slots__ = ("_function", "_name")

    def __init__(self, name: str, function):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_function", function)

    def __call__(self, *args, **kwargs):
        return self._function(*args, **kwargs)

    def __repr__(self) -> str:
        return self._name


# ----------------------------------------------------------------------------------------------------------------
# Plain data built from plain data
# ----------------------------------------------------------------------------------------------------------------

_CONTAINERS = (list, tuple, set, frozenset, dict)


def _container(value, name: str):
    if not isinstance(value, _CONTAINERS):
        raise _Refusal(f"{name} was given a {type(value).__name__}, not plain data")
    return value


def _one_container(name: str, kind, args, kwargs):
    if kwargs or len(args) > 1:
        raise _Refusal(f"{name} was given arguments it does not take from a fastai export")
    return kind(_container(args[0], name)) if args else kind()


def _pairs_or_mapping(name: str, kind, args, kwargs):
    if kwargs or len(args) > 1:
        raise _Refusal(f"{name} was given arguments it does not take from a fastai export")
    if not args:
        return kind()
    source = args[0]
    if isinstance(source, dict):
        return kind(source)
    if isinstance(source, list | tuple):
        if not all(isinstance(pair, list | tuple) and len(pair) == 2 for pair in source):
            raise _Refusal(f"{name} was given a sequence that is not of pairs")
        return kind(source)
    raise _Refusal(f"{name} was given a {type(source).__name__}, not plain data")


def _number(name: str, kind, args, kwargs):
    if kwargs or len(args) > 1:
        raise _Refusal(f"{name} was given arguments it does not take from a fastai export")
    if not args:
        return kind()
    value = args[0]
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 400):
        try:
            return kind(value)
        except (ValueError, OverflowError):
            raise _Refusal(f"{name} was given {_show(value)}, not a number") from None
    raise _Refusal(f"{name} was given a {type(value).__name__}, not a number")


def _text(name: str, args, kwargs):
    if kwargs or len(args) > 1:
        raise _Refusal(f"{name} was given arguments it does not take from a fastai export")
    if not args:
        return ""
    if isinstance(args[0], str):
        return args[0]
    raise _Refusal(f"{name} was given a {type(args[0]).__name__}, not a string")


def _binary(name: str, kind, args, kwargs):
    if kwargs or len(args) > 2:
        raise _Refusal(f"{name} was given arguments it does not take from a fastai export")
    if not args:
        return kind()
    value = args[0]
    if isinstance(value, bytes | bytearray) and len(args) == 1:
        return kind(value)
    if isinstance(value, str) and len(args) == 2 and args[1] in ("latin1", "latin-1"):
        return kind(value.encode("latin1"))
    if isinstance(value, list) and len(args) == 1 and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return kind(value)
    raise _Refusal(f"{name} was given a {type(value).__name__}, not bytes")


def _codecs_encode(*args, **kwargs):
    """`_codecs.encode(text, "latin1")`: how protocol 2 pickles bytes."""
    if kwargs or len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
        raise _Refusal("_codecs.encode was given arguments other than (str, 'latin1')")
    return args[0].encode("latin1")


def _slice(*args, **kwargs):
    if kwargs or not 1 <= len(args) <= 3 or not all(a is None or type(a) is int for a in args):
        raise _Refusal("builtins.slice was given arguments other than ints and None")
    return slice(*args)


def _torch_size(*args, **kwargs):
    if kwargs or len(args) > 1 or (args and not isinstance(args[0], list | tuple)):
        raise _Refusal("torch.Size was given arguments other than a tuple of ints")
    sizes = tuple(args[0]) if args else ()
    if not all(type(s) is int and s >= 0 for s in sizes):
        raise _Refusal("torch.Size was given arguments other than a tuple of ints")
    return sizes


def _data_constructors() -> dict[str, Any]:
    def make(name, build):
        return _Safe(name, lambda *args, **kwargs: build(name, args, kwargs))

    table: dict[str, Any] = {}
    for kind in (list, tuple, set, frozenset):
        table[f"builtins.{kind.__name__}"] = make(
            f"builtins.{kind.__name__}", lambda n, a, k, kind=kind: _one_container(n, kind, a, k)
        )
    table["builtins.dict"] = make("builtins.dict", lambda n, a, k: _pairs_or_mapping(n, dict, a, k))
    table["collections.OrderedDict"] = make(
        "collections.OrderedDict", lambda n, a, k: _pairs_or_mapping(n, OrderedDict, a, k)
    )
    table["collections.Counter"] = make("collections.Counter", lambda n, a, k: _pairs_or_mapping(n, Counter, a, k))
    # defaultdict(factory): a plain dict (the factory, a placeholder or a safe constructor, is dropped)
    table["collections.defaultdict"] = make(
        "collections.defaultdict", lambda n, a, k: _pairs_or_mapping(n, dict, a[1:], k)
    )
    table["collections.deque"] = make("collections.deque", lambda n, a, k: _one_container(n, list, a[:1], k))
    for kind in (int, float, complex, bool):
        table[f"builtins.{kind.__name__}"] = make(
            f"builtins.{kind.__name__}", lambda n, a, k, kind=kind: _number(n, kind, a, k)
        )
    table["builtins.str"] = make("builtins.str", _text)
    for kind in (bytes, bytearray):
        table[f"builtins.{kind.__name__}"] = make(
            f"builtins.{kind.__name__}", lambda n, a, k, kind=kind: _binary(n, kind, a, k)
        )
    table["builtins.slice"] = _Safe("builtins.slice", _slice)
    table["_codecs.encode"] = _Safe("_codecs.encode", _codecs_encode)
    table["torch.Size"] = _Safe("torch.Size", _torch_size)
    return table


_DATA_CONSTRUCTORS = _data_constructors()
_PYTHON2_NAMES = {"builtins.long": "builtins.int", "builtins.unicode": "builtins.str"}


def _inert_getattr(*args, **kwargs):
    """`builtins.getattr` as cloudpickle uses it (a bound method: `getattr(<class>, "<method>")`): only on a
    placeholder and with an identifier, giving another placeholder."""
    if kwargs or len(args) != 2:
        raise _Refusal("builtins.getattr was given arguments other than (placeholder, name)")
    obj, name = args
    base = inert_name(obj)
    if base is None or not isinstance(name, str) or not _IDENTIFIER.match(name):
        what = type(obj).__name__ if base is None else base
        shown = _show(name)
        raise _Refusal(f"builtins.getattr was asked for {shown} of a {what}; only a fastai class's method may be named")
    return InertAttribute(obj, name)


class _PrintPlaceholder(Inert):
    """`builtins.print` as a value (fastai's `Learner.logger`); calling it is refused."""

    __slots__ = ()
    inert_name = "builtins.print"

    def __new__(cls, *args, **kwargs):
        raise _Refusal("builtins.print was called; it may only appear as a value")


# ----------------------------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------------------------


class _StorageType(_Sealed):
    """What `torch.FloatStorage` & co. stand for in a persistent id: a dtype."""

    __slots__ = ("name", "dtype", "element_size")

    def __init__(self, name: str, dtype: torch.dtype):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "element_size", torch.empty((), dtype=dtype).element_size())


class _Storage(_Sealed):
    """A storage the pickle refers to: its key, dtype and declared number of elements; `data` (a 1-D tensor) once
    its bytes are read and checked."""

    __slots__ = ("key", "dtype", "numel", "type_name", "element_size", "data")

    def __init__(self, key: str, storage_type: _StorageType, numel: int):
        for name, value in (
            ("key", key),
            ("dtype", storage_type.dtype),
            ("numel", numel),
            ("type_name", f"torch.{storage_type.name}"),
            ("element_size", storage_type.element_size),
            ("data", None),
        ):
            object.__setattr__(self, name, value)


class LazyTensor(_Sealed):
    """A tensor the pickle rebuilds: a checked view (offset, shape, stride) of a `_Storage`; `materialize()` makes
    it (a contiguous copy) once the storage's bytes are read, checking the view against them again."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        for name, value in (("storage", storage), ("offset", offset), ("size", size), ("stride", stride)):
            object.__setattr__(self, name, value)

    @property
    def dtype(self) -> torch.dtype:
        return self.storage.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.size

    def materialize(self) -> torch.Tensor:
        data = self.storage.data
        if data is None:
            raise ExportError(f"the bytes of storage {self.storage.key!r} were never read")
        if math.prod(self.size) and _last_element(self.offset, self.size, self.stride) >= data.numel():
            raise ExportError(f"a view of storage {self.storage.key!r} reaches beyond its {data.numel()} elements")
        return torch.as_strided(data, self.size, self.stride, self.offset).clone()


def _last_element(offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> int:
    return offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if isinstance(value, torch.Size):
        value = tuple(value)
    if not isinstance(value, tuple | list) or len(value) > MAX_TENSOR_DIMS:
        raise _Refusal(f"{what} must be a tuple of at most {MAX_TENSOR_DIMS} ints, got a {type(value).__name__}")
    if not all(type(v) is int and 0 <= v < 1 << 62 for v in value):
        raise _Refusal(f"{what} must hold non-negative ints, got {_show(value)}")
    return tuple(value)


def _view(storage, offset, size, stride, name: str) -> LazyTensor:
    """A view of `storage` checked against its declared length before anything is made."""
    if not isinstance(storage, _Storage):
        raise _Refusal(f"{name} was given a {type(storage).__name__} where a storage read from the file belongs")
    if type(offset) is not int or offset < 0:
        raise _Refusal(f"{name} was given the storage offset {_show(offset)}, not an int >= 0")
    size = _int_tuple(size, f"{name}'s shape")
    stride = _int_tuple(stride, f"{name}'s stride")
    if len(size) != len(stride):
        raise _Refusal(f"{name} was given a shape {size} and a stride {stride} of different lengths")
    count = math.prod(size)
    if count:
        last = _last_element(offset, size, stride)
        if last >= storage.numel:
            raise _Refusal(
                f"{name} asks for a view (offset {offset}, shape {size}, stride {stride}) reaching element {last} "
                f"of storage {storage.key!r}, which holds {storage.numel} elements"
            )
        if count > storage.numel:
            raise _Refusal(
                f"{name} asks for {count} elements (shape {size}) from storage {storage.key!r} of {storage.numel}"
            )
    return LazyTensor(storage, offset, size, stride)


def _rebuild_tensor_v2(storage=None, storage_offset=None, size=None, stride=None, *rest, **kwargs):
    """`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks[, metadata])`:
    a checked view; requires_grad, the hooks (an empty OrderedDict) and the metadata are not used."""
    if kwargs or len(rest) > 3:
        raise _Refusal("torch._utils._rebuild_tensor_v2 was given arguments it does not take")
    return _view(storage, storage_offset, size, stride, "torch._utils._rebuild_tensor_v2")


def _rebuild_tensor(storage=None, storage_offset=None, size=None, stride=None, *rest, **kwargs):
    """`torch._utils._rebuild_tensor(storage, offset, size, stride)` (older files)."""
    if kwargs or rest:
        raise _Refusal("torch._utils._rebuild_tensor was given arguments it does not take")
    return _view(storage, storage_offset, size, stride, "torch._utils._rebuild_tensor")


def _rebuild_parameter(data=None, requires_grad=None, backward_hooks=None, *rest, **kwargs):
    """`torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)` (and `_with_state`, whose extra
    state is not used): the tensor itself."""
    if kwargs or len(rest) > 1:
        raise _Refusal("torch._utils._rebuild_parameter was given arguments it does not take")
    if not isinstance(data, LazyTensor):
        raise _Refusal(f"torch._utils._rebuild_parameter was given a {type(data).__name__}, not a rebuilt tensor")
    return data


def _rebuild_from_type_v2(func=None, new_type=None, args=None, state=None, *rest, **kwargs):
    """`torch._tensor._rebuild_from_type_v2(func, type, args, state)` (a tensor subclass such as fastai's
    `TensorText`): `func` must be a tensor rebuild of this allow-list; the subclass and its state are dropped."""
    if kwargs or rest or func not in _TENSOR_REBUILDS.values() or not isinstance(args, tuple):
        raise _Refusal("torch._tensor._rebuild_from_type_v2 was given something other than a tensor rebuild")
    return func(*args)


_TENSOR_REBUILDS = {
    name: _Safe(name, function)
    for name, function in (
        ("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
        ("torch._utils._rebuild_tensor", _rebuild_tensor),
        ("torch._utils._rebuild_parameter", _rebuild_parameter),
        ("torch._utils._rebuild_parameter_with_state", _rebuild_parameter),
    )
}
_REBUILD_FROM_TYPE = _Safe("torch._tensor._rebuild_from_type_v2", _rebuild_from_type_v2)
_GETATTR = _Safe("builtins.getattr", _inert_getattr)


# ----------------------------------------------------------------------------------------------------------------
# The unpickler
# ----------------------------------------------------------------------------------------------------------------


class InertUnpickler(pickle.Unpickler):
    """An unpickler whose `find_class` imports nothing: placeholders for the allow-listed packages and names, safe
    constructors for plain data, stand-ins for torch's tensor rebuilds, `RefusedGlobal` for anything else.
    `load_storage(pid)` reads a storage named by a persistent id (set by the file readers)."""

    def __init__(self, file, source: str, load_storage):
        super().__init__(file)
        self.source, self.load_storage = source, load_storage
        self.placeholders: dict[str, type] = {}
        self.seen_globals: Counter = Counter()

    def find_class(self, module: str, name: str):
        module, name = str(module), str(name)
        if module == "__builtin__":
            module = "builtins"
        dotted = f"{module}.{name}"
        self.seen_globals[dotted] += 1
        if not _MODULE.match(module) or not _IDENTIFIER.match(name):
            raise RefusedGlobal(f"{self.source} asks for the global {dotted[:120]!r}: refused; nothing was run")
        dotted = _PYTHON2_NAMES.get(dotted, dotted)
        if dotted in _DATA_CONSTRUCTORS:
            return _DATA_CONSTRUCTORS[dotted]
        if dotted in _TENSOR_REBUILDS:
            return _TENSOR_REBUILDS[dotted]
        if dotted == "torch._tensor._rebuild_from_type_v2":
            return _REBUILD_FROM_TYPE
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _TORCH_DTYPES[name]
        if dotted == "builtins.getattr":
            return _GETATTR
        if dotted == "builtins.print":
            return _PrintPlaceholder
        if dotted in INERT_NAMES or any(module == p or module.startswith(p + ".") for p in INERT_PACKAGES):
            if dotted not in self.placeholders:
                self.placeholders[dotted] = type(
                    f"Inert[{dotted}]", (Inert,), {"__slots__": (), "inert_name": dotted, "__module__": __name__}
                )
            return self.placeholders[dotted]
        raise RefusedGlobal(
            f"{self.source} asks for {dotted}: refused; nothing was run (a fastai export is read without importing "
            "anything: only fastai's classes, as inert placeholders, plain containers and torch's tensor rebuilds "
            "are allowed)"
        )

    def persistent_load(self, pid):
        return self.load_storage(pid)


# ----------------------------------------------------------------------------------------------------------------
# Reading the file
# ----------------------------------------------------------------------------------------------------------------


def _limit(max_bytes) -> int:
    if max_bytes is not None:
        return parse_size(max_bytes, "max_bytes")
    return env_size(MAX_EXPORT_BYTES_ENV, DEFAULT_MAX_EXPORT_BYTES)


class _StorageTable:
    """The storages a pickle names (persistent ids), each checked once: dtype, declared length, total budget."""

    def __init__(self, source: str, limit: int):
        self.source, self.limit = source, limit
        self.storages: dict[str, _Storage] = {}
        self.total = 0

    def get(self, storage_type, key, numel) -> _Storage:
        if not isinstance(storage_type, _StorageType):
            raise _Refusal(f"a persistent id names a {type(storage_type).__name__} where a torch storage type belongs")
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,64}", key):
            raise _Refusal(f"a persistent id names the storage {_show(key)}, not a storage key")
        if type(numel) is not int or numel < 0:
            raise _Refusal(f"storage {key!r} has the length {_show(numel)}, not an int >= 0")
        if key in self.storages:
            storage = self.storages[key]
            if storage.dtype != storage_type.dtype or storage.numel != numel:
                raise _Refusal(f"storage {key!r} is named twice with different types or lengths")
            return storage
        nbytes = numel * storage_type.element_size
        self.total += nbytes
        if self.total > self.limit:
            raise ExportError(
                f"{self.source} refused: its tensors hold more than {human(self.limit)} (raise {MAX_EXPORT_BYTES_ENV}, "
                "or pass max_bytes= / --max-export-bytes, if it is genuine)"
            )
        storage = self.storages[key] = _Storage(key, storage_type, numel)
        return storage

    @staticmethod
    def mismatch(storage: _Storage, nbytes: int) -> _Refusal:
        return _Refusal(
            f"storage {storage.key!r} ({storage.type_name}) holds {nbytes} bytes but the pickle declares "
            f"{storage.numel} {str(storage.dtype).removeprefix('torch.')} elements "
            f"({storage.numel * storage.element_size} bytes)"
        )

    def fill(self, storage: _Storage, data: bytes) -> None:
        if len(data) != storage.numel * storage.element_size:
            raise self.mismatch(storage, len(data))
        tensor = torch.frombuffer(bytearray(data), dtype=storage.dtype) if data else torch.empty(0, dtype=storage.dtype)
        object.__setattr__(storage, "data", tensor)


def _scan(stream: io.BytesIO, source: str) -> None:
    """Walk the pickle's opcodes once before unpickling (`pickletools.genops`): a damaged or truncated stream is
    reported as such, and a memo slot beyond the opcodes before it (a legitimate pickler numbers them in order;
    CPython's unpickler would allocate up to the slot at once) is refused. The stream is left where it was."""
    start = stream.tell()
    count = 0
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            count += 1
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and (type(arg) is not int or not 0 <= arg <= count):
                raise ExportError(
                    f"{source}: its pickle stores an object in memo slot {_show(arg)} after only {count} opcodes: "
                    "refused (fastai's pickles number their memo in order)"
                )
    except ExportError:
        raise
    except Exception as err:  # genops' ValueError on an unknown opcode or a truncated argument
        text = " ".join(str(err).split())[:200] or type(err).__name__
        raise ExportError(
            f"{source} is not a readable fastai export: its pickle is damaged or truncated ({text})"
        ) from None
    finally:
        stream.seek(start)


def _unpickle(data: io.BytesIO, source: str, load_storage) -> tuple[Any, Counter]:
    _scan(data, source)
    unpickler = InertUnpickler(data, source, load_storage)
    try:
        obj = unpickler.load()
    except ExportError:
        raise
    except _Refusal as err:
        raise RefusedGlobal(f"{source}: {err}: refused; nothing was run") from None
    except (RecursionError, MemoryError):
        raise ExportError(
            f"{source} is not a readable fastai export: its pickle is too deeply nested or too large"
        ) from None
    except Exception as err:  # a damaged stream: whatever the unpickler stumbles on
        text = " ".join(str(err).split())[:200] or type(err).__name__
        raise ExportError(
            f"{source} is not a readable fastai export: its pickle is damaged or truncated ({text})"
        ) from None
    return obj, unpickler.seen_globals


def _read_zip(path: Path, source: str, limit: int) -> tuple[Any, Counter]:
    """torch's zip format: one `<root>/data.pkl`, storages in `<root>/data/<key>`, little-endian."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ExportError(f"{source} is damaged or truncated: not a readable zip archive ({err})") from None
    with archive:
        infos = archive.infolist()
        pickles = [info for info in infos if info.filename.endswith("/data.pkl") and info.filename.count("/") == 1]
        if len(pickles) != 1:
            raise ExportError(
                f"{source} is a zip archive but not a torch.save file (it holds {len(pickles)} <name>/data.pkl, "
                "expected one); a fastai export is written by learn.export()"
            )
        root = pickles[0].filename[: -len("data.pkl")]
        members = {info.filename: info for info in infos}
        order = members.get(root + "byteorder")
        if order is not None:
            if _read_member(archive, order, 16, source).strip() not in (b"little",):
                raise ExportError(f"{source} was written on a big-endian machine; only little-endian files are read")
        table = _StorageTable(source, limit)

        def load_storage(pid):
            if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
                raise _Refusal(f"a persistent id {_show(pid)} is not a torch storage")
            _, storage_type, key, _location, numel = pid
            storage = table.get(storage_type, key, numel)
            if storage.data is None:
                info = members.get(f"{root}data/{key}")
                if info is None:
                    raise _Refusal(f"storage {key!r} is not in the file (no {root}data/{key})")
                expected = storage.numel * storage.element_size
                if info.file_size != expected:
                    raise table.mismatch(storage, info.file_size)
                table.fill(storage, _read_member(archive, info, expected, source))
            return storage

        data = _read_member(archive, pickles[0], MAX_PICKLE_BYTES, source)
        return _unpickle(io.BytesIO(data), source, load_storage)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, source: str) -> bytes:
    if info.file_size > limit:
        raise ExportError(f"{source}: {info.filename} holds {human(info.file_size)}, more than {human(limit)}")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as err:
        raise ExportError(f"{source} is damaged or truncated: {info.filename} cannot be read ({err})") from None
    if len(data) > limit:
        raise ExportError(f"{source}: {info.filename} expands beyond {human(limit)}")
    return data


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _read_legacy(path: Path, source: str, limit: int) -> tuple[Any, Counter]:
    """torch's legacy format (`_use_new_zipfile_serialization=False`): pickles of the magic number, the protocol
    version and system information, the object, the list of storage keys, then each storage's element count and
    bytes in that order."""
    size = path.stat().st_size
    if size > limit + MAX_PICKLE_BYTES:
        raise ExportError(f"{source} holds {human(size)}, more than {human(limit + MAX_PICKLE_BYTES)}")
    with open(path, "rb") as file:
        stream = io.BytesIO(file.read(limit + MAX_PICKLE_BYTES + 1))
    table = _StorageTable(source, limit)

    def load_storage(pid):
        if not isinstance(pid, tuple) or not pid:
            raise _Refusal(f"a persistent id {_show(pid)} is not a torch storage")
        if pid[0] == "module" and len(pid) == 4 and inert_name(pid[1]) is not None:
            return pid[1]  # the class of a module, a placeholder (its source is never compared or shown)
        if pid[0] != "storage" or len(pid) != 6:
            raise _Refusal(f"a persistent id {_show(pid)} is not a torch storage")
        _, storage_type, key, _location, numel, view = pid
        if view is not None:
            raise _Refusal(f"storage {_show(key)} is a view of another storage, which fastai never saves")
        return table.get(storage_type, key, numel)

    try:
        header = [_plain_pickle(stream, source) for _ in range(3)]
    except RefusedGlobal:
        raise
    except ValueError:
        raise ExportError(
            f"{source} is not a fastai export: neither a zip archive (torch.save) nor torch's legacy format"
        ) from None
    if header[0] != _LEGACY_MAGIC or header[1] != _LEGACY_PROTOCOL:
        raise ExportError(
            f"{source} is not a fastai export: neither a zip archive (torch.save) nor torch's legacy format"
        )
    obj, seen = _unpickle(stream, source, load_storage)
    keys = _plain_pickle(stream, source)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ExportError(f"{source} is damaged: the list of storages is not a list of keys")
    for key in keys:
        storage = table.storages.get(key)
        if storage is None:
            raise ExportError(f"{source} is damaged: it holds storage {key[:40]!r} that nothing refers to")
        head = stream.read(8)
        if len(head) != 8:
            raise ExportError(f"{source} is damaged or truncated: storage {key!r} is cut off")
        (count,) = struct.unpack("<q", head)
        if count != storage.numel:
            raise ExportError(
                f"{source} is damaged: storage {key!r} holds {count} elements, the pickle declares {storage.numel}"
            )
        nbytes = count * storage.element_size
        data = stream.read(nbytes)
        if len(data) != nbytes:
            raise ExportError(f"{source} is damaged or truncated: storage {key!r} is cut off")
        try:
            table.fill(storage, data)
        except _Refusal as err:
            raise ExportError(f"{source}: {err}") from None
    return obj, seen


def _plain_pickle(stream: io.BytesIO, source: str):
    """One pickle of plain data (the legacy format's header and key list), by the core's data-only unpickler: no
    global, no persistent id."""
    _scan(stream, source)

    class Plain(DataOnlyUnpickler):
        def find_class(self, module, name):
            raise RefusedGlobal(f"{source} asks for {module}.{name}: refused; nothing was run")

    try:
        return Plain(stream).load()
    except ExportError:
        raise
    except Exception as err:
        raise ExportError(f"{source} is not readable: {' '.join(str(err).split())[:200]}") from None


def load_export_graph(path: str | os.PathLike, *, max_bytes: int | str | None = None) -> tuple[Any, Counter]:
    """The inert object graph of a fastai export and the globals its pickle named (`module.name` -> count).

    Reads torch's zip format (what `learn.export()` writes) and its legacy format; nothing is imported or run.
    `max_bytes`: the most its tensors may hold (default `$HF_BPT3C_MAX_EXPORT_BYTES`, else 4 GiB). `ValueError`
    (`RefusedGlobal` for a global outside the allow-list) naming the file otherwise."""
    path = _regular_file(Path(path), "EXPORT file")
    source = str(path)
    limit = _limit(max_bytes)
    with open(path, "rb") as file:
        head = file.read(4)
    if head[:2] == b"PK":
        return _read_zip(path, source, limit)
    if head[:1] == b"\x80":
        return _read_legacy(path, source, limit)
    raise ExportError(
        f"{source} is not a fastai export: neither a zip archive (torch.save, what learn.export() writes) nor torch's "
        "legacy format"
    )


# ----------------------------------------------------------------------------------------------------------------
# What the inert graph holds
# ----------------------------------------------------------------------------------------------------------------

_DEFAULT_RULES = tuple(
    f"fastai.text.core.{name}"
    for name in (
        "fix_html",
        "replace_rep",
        "replace_wrep",
        "spec_add_spaces",
        "rm_useless_spaces",
        "replace_all_caps",
        "replace_maj",
        "lowercase",
    )
)
_SPACY_LANG = re.compile(r"^spacy\.lang\.([a-z]{2,3})(?:\.|$)")
_NUMPY_SCALAR_FORMATS = {
    "b1": "?",
    "i1": "b",
    "i2": "h",
    "i4": "i",
    "i8": "q",
    "u1": "B",
    "u2": "H",
    "u4": "I",
    "u8": "Q",
    "f4": "f",
    "f8": "d",
}


@dataclass
class FastaiExport:
    """What `read_fastai_export` took from an export's inert object graph.

    `learner`: the learner's class (`fastai.text.learner.TextLearner`); `kind`: `"classifier"` or
    `"language_model"`; `state_dict`: the model's tensors under fastai's keys (as `learn.model.state_dict()`);
    `vocab`: `dls.vocab` (a classifier's `dls.vocab[0]`); `labels`: a classifier's class names (`dls.vocab[1]`),
    None when it has none; `bptt`/`max_len`: `SentenceEncoder`'s (the LM loader's `seq_len` for a language model),
    None when not found; `backwards`: the data is reversed (fastai's `backwards=True`); `tokenizer`: `"word"` (spaCy)
    or `"sentencepiece"`; `lang`: spaCy's language; `sp_model`: the SentencePiece model file the tokenizer refers
    to (as recorded, never opened here); `globals`: the globals its pickle named, with counts."""

    path: Path
    learner: str
    kind: str
    state_dict: dict[str, torch.Tensor]
    vocab: list[str]
    labels: list[str] | None = None
    bptt: int | None = None
    max_len: int | None = None
    backwards: bool = False
    tokenizer: str = "word"
    lang: str | None = None
    sp_model: PurePosixPath | None = None
    notes: list[str] = field(default_factory=list)
    globals: Counter = field(default_factory=Counter)


def _children(obj) -> list:
    if isinstance(obj, Inert):
        return [*obj.attributes.values(), *obj.args, *obj.kwargs.values(), *obj.items.values(), *obj.elements]
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    return []


def _find(root, source: str, *, prefixes: tuple[str, ...] = (), names: tuple[str, ...] = ()) -> dict[str, list]:
    """Placeholders (instances and classes) reachable from `root` whose global name is in `names` or starts with
    one of `prefixes`, by name, in the order found (breadth first, each object once)."""
    found: dict[str, list] = {}
    seen: set[int] = set()
    queue = [root]
    while queue:
        next_queue = []
        for obj in queue:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if len(seen) > MAX_GRAPH_OBJECTS:
                raise ExportError(f"{source} holds more than {MAX_GRAPH_OBJECTS} objects next to its model: refused")
            name = inert_name(obj)
            if name is not None and (name in names or name.startswith(prefixes or ("\0",))):
                found.setdefault(name, []).append(obj)
            next_queue.extend(_children(obj))
        queue = next_queue
    return found


def _first(found: dict[str, list], *names: str):
    for name in names:
        for obj in found.get(name, []):
            if isinstance(obj, Inert):
                return obj
    return None


def _items(obj) -> list | None:
    """The items of a list, tuple, fastcore `L` or `CategoryMap` placeholder (their `items`), else None."""
    for _ in range(4):
        if isinstance(obj, list | tuple):
            return list(obj)
        if not isinstance(obj, Inert):
            return None
        if obj.elements and not obj.attributes:
            return list(obj.elements)
        obj = obj.attributes.get("items")
    return None


def _scalar(value):
    """A label as a plain value: str, int, float, bool, or a numpy scalar's value decoded from its bytes."""
    if isinstance(value, str | int | float | bool):
        return value
    if is_inert_instance(value) and inert_name(value).endswith("multiarray.scalar") and len(value.args) == 2:
        dtype, data = value.args
        code = dtype.args[0] if is_inert_instance(dtype, "numpy.dtype") and dtype.args else None
        if isinstance(code, str) and isinstance(data, bytes):
            if code in _NUMPY_SCALAR_FORMATS and len(data) == struct.calcsize("<" + _NUMPY_SCALAR_FORMATS[code]):
                return struct.unpack("<" + _NUMPY_SCALAR_FORMATS[code], data)[0]
            if re.fullmatch(r"U\d{1,4}", code) and len(data) % 4 == 0:
                return data.decode("utf-32-le", errors="replace").rstrip("\0")
    return None


def _label_names(categorize: Inert, source: str) -> list[str] | None:
    """The class names of a `Categorize`/`MultiCategorize` placeholder (its `CategoryMap`'s items)."""
    values = _items(categorize.attributes.get("vocab"))
    if values is None:
        return None
    names = []
    for value in values:
        plain = _scalar(value)
        if plain is None:
            raise ExportError(f"{source}: a class name of its data is a {inert_name(value) or type(value).__name__}")
        names.append(str(plain))
    return names


def _path_of(obj) -> PurePosixPath | None:
    """A path recorded in the pickle (`pathlib.PosixPath('a', 'b')` placeholder or a str), never opened here."""
    if isinstance(obj, str):
        return PurePosixPath(obj.replace("\\", "/"))
    if is_inert_instance(obj) and inert_name(obj).startswith("pathlib.") and all(isinstance(a, str) for a in obj.args):
        parts = [part.replace("\\", "/") for part in obj.args]
        return PurePosixPath(*parts) if parts else None
    return None


MAX_MODULE_VISITS = 100_000


def _module_tree(model: Inert, source: str) -> dict[str, torch.Tensor]:
    """`model.state_dict()` from the placeholders: each module's `_parameters` and persistent `_buffers`, then its
    `_modules` (None entries skipped), under dotted keys. A module may appear twice (fastai's `encoder_dp.emb` is
    `encoder`), but not inside itself; a tensor shared by two keys stays one tensor."""
    out: dict[str, torch.Tensor] = {}
    made: dict[int, torch.Tensor] = {}
    stack: list[tuple[Inert, str, tuple[int, ...]]] = [(model, "", ())]
    visits = 0
    while stack:
        module, prefix, ancestors = stack.pop()
        visits += 1
        if visits > MAX_MODULE_VISITS or len(ancestors) > MAX_MODULE_DEPTH:
            raise ExportError(f"{source}: its model nests modules too deeply or too many times")
        if id(module) in ancestors:
            raise ExportError(f"{source}: its model holds module {prefix[:-1]!r} inside itself")
        attributes = module.attributes
        skip = attributes.get("_non_persistent_buffers_set")
        skip = skip if isinstance(skip, set | frozenset) else set()
        for group in ("_parameters", "_buffers"):
            tensors = attributes.get(group) or {}
            if not isinstance(tensors, dict):
                raise ExportError(f"{source}: {prefix or 'the model'}'s {group} is a {type(tensors).__name__}")
            for name, tensor in tensors.items():
                if not isinstance(name, str) or not _IDENTIFIER.match(name):
                    raise ExportError(f"{source}: its model has a tensor named {_show(name)}")
                if tensor is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(tensor, LazyTensor):
                    what = inert_name(tensor) or type(tensor).__name__
                    raise ExportError(f"{source}: {prefix}{name} is a {what}, not a tensor")
                if id(tensor) not in made:
                    made[id(tensor)] = tensor.materialize()
                out[prefix + name] = made[id(tensor)]
        children = attributes.get("_modules") or {}
        if not isinstance(children, dict):
            raise ExportError(f"{source}: {prefix or 'the model'}'s _modules is a {type(children).__name__}")
        for name, child in reversed(list(children.items())):
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,64}", name):
                raise ExportError(f"{source}: its model has a module named {_show(name)}")
            if child is None:
                continue
            if not is_inert_instance(child):
                raise ExportError(f"{source}: {prefix}{name} is a {type(child).__name__}, not a module")
            stack.append((child, f"{prefix}{name}.", (*ancestors, id(module))))
    return out


def _submodule(module: Inert, name: str):
    child = (module.attributes.get("_modules") or {}).get(name)
    return child if is_inert_instance(child) else None


def _awd_lstm_model(model, source: str) -> tuple[str, Inert, Inert | None]:
    """(kind, the AWD_LSTM placeholder, the SentenceEncoder placeholder or None), checking that the model is
    fastai's `SequentialRNN(AWD_LSTM, LinearDecoder)` or `SequentialRNN(SentenceEncoder(AWD_LSTM),
    PoolingLinearClassifier)`."""
    what = inert_name(model) or type(model).__name__
    body, head = (_submodule(model, "0"), _submodule(model, "1")) if is_inert_instance(model) else (None, None)
    names = [inert_name(part) or "" for part in (body, head)]
    expected = (
        "only fastai's AWD-LSTM text models (language_model_learner or text_classifier_learner with AWD_LSTM) can be "
        "converted"
    )
    if body is None or head is None:
        raise ExportError(f"{source}: its model is a {what}, not a SequentialRNN of an encoder and a head; {expected}")
    encoder, sentence_encoder = body, None
    if not names[0].endswith(".AWD_LSTM"):
        sentence_encoder, encoder = body, _submodule(body, "module")
    if encoder is None or not (inert_name(encoder) or "").endswith(".AWD_LSTM"):
        inner = inert_name(encoder) if encoder is not None else names[0]
        raise ExportError(f"{source}: its model's encoder is a {inner}, not fastai's AWD_LSTM; {expected}")
    if encoder.attributes.get("n_dir", 1) != 1 or encoder.attributes.get("bidir"):
        raise ExportError(f"{source}: its AWD_LSTM is bidirectional, which hf_bpt3c's AWD-LSTM is not")
    if names[1].endswith(".LinearDecoder") and sentence_encoder is None:
        return "language_model", encoder, None
    if names[1].endswith(".PoolingLinearClassifier") and sentence_encoder is not None:
        return "classifier", encoder, sentence_encoder
    raise ExportError(f"{source}: its model is {names[0]} followed by {names[1]}; {expected}")


def _positive_int(value) -> int | None:
    return value if type(value) is int and value >= 1 else None


def read_fastai_export(path: str | os.PathLike, *, max_bytes: int | str | None = None) -> FastaiExport:
    """Read a fastai export (`learn.export()`) of an AWD-LSTM text classifier or language model without running
    its pickle (`load_export_graph`), and take from it the model's tensors, the vocabulary, a classifier's class
    names and the settings it records (see `FastaiExport`). `ValueError` naming the file for anything else."""
    path = Path(path)
    source = str(path)
    root, seen = load_export_graph(path, max_bytes=max_bytes)
    learner = inert_name(root) or type(root).__name__
    attributes = root.attributes if is_inert_instance(root) else root if isinstance(root, dict) else {}
    state_dict_file = isinstance(root, dict) and (
        isinstance(root.get("model"), dict) or (root and all(isinstance(v, LazyTensor) for v in root.values()))
    )
    if "model" not in attributes or state_dict_file:
        hint = ""
        if state_dict_file:
            hint = (
                ": it is a checkpoint of weights (learn.save / torch.save of a state dict); convert it with its "
                "vocabulary (convert_fastai(weights, vocab, ...), hf-bpt3c convert-fastai WEIGHTS --vocab ITOS)"
            )
        what = f"a {learner}" if inert_name(root) else f"a {type(root).__name__}"
        raise ExportError(f"{source} holds {what}, not a fastai Learner (what learn.export() writes){hint}")
    kind, awd_lstm, sentence_encoder = _awd_lstm_model(attributes["model"], source)
    state_dict = _module_tree(attributes["model"], source)
    notes: list[str] = []
    data = attributes.get("dls", attributes.get("data"))
    found = _find(
        data,
        source,
        prefixes=("spacy.lang.",),
        names=(
            "fastai.text.data.Numericalize",
            "fastai.data.transforms.Categorize",
            "fastai.data.transforms.MultiCategorize",
            "fastai.text.core.Tokenizer",
            "fastai.text.core.SpacyTokenizer",
            "fastai.text.core.SentencePieceTokenizer",
            "fastai.text.data.reverse_text",
            "fastai.text.data.LMDataLoader",
        ),
    )
    vocab = _vocabulary(found, state_dict, kind, source)
    export = FastaiExport(path=path, learner=learner, kind=kind, state_dict=state_dict, vocab=vocab, globals=seen)
    export.notes = notes
    if kind == "classifier":
        categorize = _first(found, "fastai.data.transforms.Categorize", "fastai.data.transforms.MultiCategorize")
        if categorize is None:
            notes.append("the export's data has no Categorize transform (a regression?): classes are named LABEL_<i>")
        else:
            export.labels = _label_names(categorize, source)
            if inert_name(categorize).endswith("MultiCategorize"):
                notes.append("a multi-label classifier (fastai's MultiCategoryBlock): apply a sigmoid to each logit")
        encoder_attributes = sentence_encoder.attributes
        export.bptt = _positive_int(encoder_attributes.get("bptt"))
        export.max_len = _positive_int(encoder_attributes.get("max_len"))
    else:
        loader = _first(found, "fastai.text.data.LMDataLoader")
        export.bptt = _positive_int(loader.attributes.get("seq_len")) if loader is not None else None
    export.backwards = bool(found.get("fastai.text.data.reverse_text"))
    _tokenizer_settings(export, found, source)
    if awd_lstm.attributes.get("pad_token", 1) != 1:
        notes.append(f"the AWD_LSTM's pad_token is {awd_lstm.attributes.get('pad_token')}, not fastai's 1")
    return export


def _vocabulary(found: dict[str, list], state_dict: dict[str, torch.Tensor], kind: str, source: str) -> list[str]:
    """`Numericalize.vocab`: the one whose length is the embedding's rows when the data holds several."""
    key = "0.module.encoder.weight" if kind == "classifier" else "0.encoder.weight"
    rows = state_dict[key].shape[0] if key in state_dict and state_dict[key].dim() == 2 else None
    candidates = []
    for numericalize in found.get("fastai.text.data.Numericalize", []):
        if isinstance(numericalize, Inert):
            tokens = _items(numericalize.attributes.get("vocab"))
            if tokens is not None:
                candidates.append(tokens)
    if not candidates:
        raise ExportError(
            f"{source} holds no vocabulary (fastai's Numericalize transform in learn.dls): export the learner with "
            "the DataLoaders it was trained with"
        )
    fitting = [tokens for tokens in candidates if len(tokens) == rows] or candidates
    vocab = fitting[0]
    if any(tokens != vocab for tokens in fitting[1:]):
        raise ExportError(f"{source} holds several different vocabularies; which one the model uses is unclear")
    for index, token in enumerate(vocab):
        if not isinstance(token, str):
            raise ExportError(
                f"{source}: entry {index} of its vocabulary is a {inert_name(token) or type(token).__name__}, not a "
                "token string"
            )
    return list(vocab)


def _tokenizer_settings(export: FastaiExport, found: dict[str, list], source: str) -> None:
    """The tokenizer of the export's data: spaCy words (its language) or SentencePiece (the model file it refers
    to), and whether its rules are fastai's defaults."""
    tokenizer = _first(found, "fastai.text.core.Tokenizer")
    if tokenizer is None:
        export.notes.append(
            "the export's data has no fastai Tokenizer (pre-tokenized texts?): fastai's English word tokenizer is used"
        )
        return
    tok = tokenizer.attributes.get("tok")
    name = inert_name(tok) or type(tok).__name__
    rules = tokenizer.attributes.get("rules")
    rule_names = tuple(inert_name(rule) or type(rule).__name__ for rule in rules) if isinstance(rules, list) else None
    if rule_names is not None and rule_names != _DEFAULT_RULES:
        shown = ", ".join(n.rsplit(".", 1)[-1] for n in rule_names) or "none"
        export.notes.append(
            f"the export's tokenizer rules ({shown}) are not fastai's defaults, which hf_bpt3c's tokenizer applies: "
            "token ids may differ from fastai's"
        )
    if name == "fastai.text.core.SentencePieceTokenizer":
        export.tokenizer = "sentencepiece"
        recorded = _path_of(tok.attributes.get("sp_model"))
        if recorded is None:
            cache_dir = _path_of(tok.attributes.get("cache_dir"))
            recorded = (cache_dir / "spm.model") if cache_dir is not None else PurePosixPath("spm.model")
        export.sp_model = recorded
        return
    if name != "fastai.text.core.SpacyTokenizer":
        raise ExportError(
            f"{source}: its tokenizer is a {name}; hf_bpt3c reproduces fastai's SpacyTokenizer (English words) and "
            "SentencePieceTokenizer only"
        )
    languages = sorted({match.group(1) for n in found for match in [_SPACY_LANG.match(n)] if match})
    export.lang = languages[0] if len(languages) == 1 else None
    if export.lang not in (None, "en"):
        raise ExportError(
            f"{source}: its tokenizer is spaCy's {export.lang!r} word tokenizer; hf_bpt3c's word tokenizer is fastai's "
            "English one (for other languages, fastai's SentencePieceTokenizer is supported)"
        )
    export.lang = "en"


# ----------------------------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class FastaiExportConversion(FastaiConversion):
    """What `convert_fastai_export` wrote (`FastaiConversion`'s fields) and where it came from: the export file,
    the learner's class and the class names (None for a language model)."""

    export: Path | None = None
    learner: str = ""
    labels: list[str] | None = None


def _sp_model_next_to(export: FastaiExport) -> Path | None:
    """The SentencePiece model the export refers to, looked for next to the export only (its file name, in the
    export's folder or in the folder named as the recorded one's parent): a path read from the pickle is never
    followed elsewhere."""
    if export.sp_model is None:
        return None
    name = export.sp_model.name
    if not name or name in (".", ".."):
        return None
    folder = export.path.parent
    candidates = [folder / name]
    parent = export.sp_model.parent.name
    if parent and parent not in (".", ".."):
        candidates.append(folder / parent / name)
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def _card_info(export: FastaiExport):
    def info(result: FastaiConversion) -> dict[str, Any]:
        what = "text classifier" if export.kind == "classifier" else "language model"
        learner = export.learner.rsplit(".", 1)[-1]
        text = (
            f"Converted from the fastai export `{export.path.name}` (`learn.export()` of a `{learner}`, an AWD-LSTM "
            f"{what}) by `hf-bpt3c convert-fastai`, which read it without running its pickle: fastai's classes were "
            "inert placeholders and only the model's tensors, the vocabulary"
            + (", the class names" if export.labels else "")
            + " and the settings were taken from it."
        )
        if result.notes:
            text += " Conversion notes: " + "; ".join(result.notes) + "."
        return {"source": text}

    return info


def convert_fastai_export(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    sp_model: str | os.PathLike | bytes | None = None,
    lang: str | None = None,
    max_bytes: int | str | None = None,
) -> FastaiExportConversion:
    """Convert a fastai export (`learn.export()`'s `export.pkl`, a Hub fastai repository's `model.pkl`) of an
    AWD-LSTM text classifier or language model into a `save_pretrained` folder, without running its pickle.

    Args:
        path: the export file (torch's zip format as `learn.export()` writes it, or torch's legacy format).
        out_dir: the folder to write; refused if it is not empty, unless `overwrite`.
        overwrite: write into a non-empty `out_dir` (files not produced by the conversion are kept).
        sp_model: the SentencePiece `.model` file (path or bytes) of a learner trained with fastai's
            `SentencePieceTokenizer`; by default the file the export refers to (`spm.model`) is looked for next to
            the export (in its folder, or in the folder named as the recorded one's parent, such as `tmp/`).
        lang: the language code recorded in the tokenizer and model card (spaCy's, `en`, for a word tokenizer).
        max_bytes: the most the export's tensors may hold (default `$HF_BPT3C_MAX_EXPORT_BYTES`, else 4 GiB).

    The weights, the vocabulary (`dls.vocab`), a classifier's class names, `bptt`/`max_len` (`SentenceEncoder`'s,
    or the LM loader's `seq_len` and 20 x that), `backwards` and the tokenizer come from the export
    (`read_fastai_export`); `convert_fastai` then checks and writes them, so the folder's logits are the learner's
    (`learn.model` in eval mode). A global outside the allow-list raises `RefusedGlobal` (a `ValueError`) naming it;
    a damaged, truncated or foreign file `ValueError` naming the file. Returns a `FastaiExportConversion`.
    """
    path, out_dir = Path(path), Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    export = read_fastai_export(path, max_bytes=max_bytes)
    bptt = export.bptt or 72
    max_len = export.max_len or max(20 * bptt, 1440 if export.bptt is None else 0)
    notes = list(export.notes)
    with tempfile.TemporaryDirectory(prefix="hf_bpt3c-export-") as tmp:
        weights = Path(tmp) / path.name
        torch.save(export.state_dict, weights)
        sp_path = None
        if export.tokenizer == "sentencepiece":
            if isinstance(sp_model, bytes | bytearray):
                sp_path = Path(tmp) / "spm.model"
                sp_path.write_bytes(bytes(sp_model))
            elif sp_model is not None:
                sp_path = Path(sp_model)
            else:
                sp_path = _sp_model_next_to(export)
                if sp_path is None:
                    raise ExportError(
                        f"{path} was trained with fastai's SentencePieceTokenizer, whose model an export does not "
                        f"hold: it refers to {str(export.sp_model)[:200]!r}. Put that "
                        f"{export.sp_model.name or 'spm.model'} next to the export, or pass sp_model= (--sp-model PATH)"
                    )
                notes.append(f"the SentencePiece model {sp_path} was used")
        elif sp_model is not None:
            raise ExportError(
                f"{path} was trained with fastai's word tokenizer (spaCy), not SentencePiece: drop sp_model"
            )
        try:
            result = convert_fastai(
                weights,
                export.vocab,
                out_dir,
                backwards=export.backwards,
                bptt=bptt,
                max_len=max_len,
                overwrite=overwrite,
                labels=export.labels,
                sp_model=sp_path,
                lang=lang if lang is not None else (export.lang if export.tokenizer == "word" else None),
                card_info=_card_info(export),
            )
        except ValueError as err:
            message = (
                str(err).replace(f"WEIGHTS file {weights}", f"the model of {path}").replace(str(weights), str(path))
            )
            raise ExportError(message) from None
    fields = {name: getattr(result, name) for name in FastaiConversion.__dataclass_fields__}
    fields["notes"] = notes + list(result.notes)
    return FastaiExportConversion(**fields, export=path, learner=export.learner, labels=export.labels)


__all__ = [
    "DEFAULT_MAX_EXPORT_BYTES",
    "INERT_NAMES",
    "INERT_PACKAGES",
    "MAX_EXPORT_BYTES_ENV",
    "ExportError",
    "FastaiExport",
    "FastaiExportConversion",
    "Inert",
    "InertUnpickler",
    "RefusedGlobal",
    "convert_fastai_export",
    "load_export_graph",
    "read_fastai_export",
]
