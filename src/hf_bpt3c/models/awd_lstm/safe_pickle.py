"""Pickles of plain data read without running code: a scan of the opcodes first (only data opcodes, a few
containers: nothing that imports, calls or builds objects, no nesting or shared-structure blow-up), then an
unpickler that refuses every global. For fastai's vocabularies (`itos`), a list of token strings."""

from __future__ import annotations

import io
import pickle
import pickletools

# The opcodes a pickle of plain data uses (every protocol); anything that imports, calls, builds objects, refers
# to outside objects or makes sets/buffers is refused before unpickling.
_DATA_OPCODES = frozenset(
    """PROTO FRAME STOP MARK POP POP_MARK DUP PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET
    INT BININT BININT1 BININT2 LONG LONG1 LONG4 NONE NEWTRUE NEWFALSE FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8
    EMPTY_LIST APPEND APPENDS LIST EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_DICT DICT SETITEM SETITEMS""".split()
)
_CONTAINER_OPCODES = frozenset("EMPTY_LIST LIST EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_DICT DICT".split())
MAX_PICKLE_CONTAINERS = 16  # a vocabulary is one list (or dict); this bounds nesting and shared structures


class DataOnlyUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global: only built-in containers and scalars can be built."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a vocabulary")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in a vocabulary")


def scan_pickle(data: bytes) -> None:
    """Refuse, before anything is built, a pickle with a non-data opcode or more than `MAX_PICKLE_CONTAINERS`
    containers. `pickle.UnpicklingError` (or `ValueError` for a malformed stream) with the reason."""
    containers, strings = 0, ["?", "?"]  # the last two strings pushed: STACK_GLOBAL's module and name
    for opcode, arg, position in pickletools.genops(io.BytesIO(data)):
        if isinstance(arg, str) and "UNICODE" in opcode.name:
            strings = [strings[-1], arg]
        if opcode.name in ("GLOBAL", "STACK_GLOBAL", "INST"):
            module, name = arg.split(" ", 1) if isinstance(arg, str) and " " in arg else strings
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a vocabulary")
        if opcode.name not in _DATA_OPCODES:
            raise pickle.UnpicklingError(
                f"opcode {opcode.name} at byte {position} is not allowed in a vocabulary (only strings, numbers, "
                "lists, tuples and dicts)"
            )
        if opcode.name in _CONTAINER_OPCODES:
            containers += 1
            if containers > MAX_PICKLE_CONTAINERS:
                raise pickle.UnpicklingError(
                    f"more than {MAX_PICKLE_CONTAINERS} lists/tuples/dicts (a vocabulary is one flat list of tokens)"
                )


def load_data_pickle(data: bytes) -> object:
    """The object pickled in `data`, after `scan_pickle` (`pickle.UnpicklingError`, `ValueError`, ... on refusal)."""
    scan_pickle(data)
    return DataOnlyUnpickler(io.BytesIO(data)).load()


__all__ = ["DataOnlyUnpickler", "MAX_PICKLE_CONTAINERS", "load_data_pickle", "scan_pickle"]
