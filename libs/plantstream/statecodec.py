"""A safe, versioned encoding of service state objects (detectors, rule windows, alert books).

Why not pickle: state is read back from Kafka changelog topics, and unpickling bytes from the
network runs whatever they say (invariant 6). This codec writes a JSON tree of plain
values and rebuilds objects only of classes named in an explicit allowlist, by creating the
instance without calling ``__init__`` and setting its attributes: nothing in the bytes can
name a function to call, a module to import or a class outside the list.

Supported values: None, bool, int, float (incl. NaN and infinities), str, bytes, list, tuple,
set, frozenset, dict (any encodable keys), ``collections.deque`` (with ``maxlen``), numpy
arrays and scalars, and instances (``__dict__`` and/or ``__slots__``, dataclasses included) of
allowlisted classes. Anything else raises :class:`StateCodecError` at encode time, so an
unsupported field is found by the first test, not by a restart in production.

A class may name fields it can derive from the others in ``__derived__``: they are not
written, and its ``__setstate__(fields)`` rebuilds them when the state is read back.

>>> from collections import deque
>>> codec = StateCodec([])
>>> codec.decode(codec.encode({"a": (1, 2.5), 3: deque([1], maxlen=4), "s": frozenset("x")}))
{'a': (1, 2.5), 3: deque([1], maxlen=4), 's': frozenset({'x'})}
"""

from __future__ import annotations

import base64
import json
import math
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from plantstream.errors import PlantstreamError

FORMAT = "plantstream-state-json-1"
MAX_DEPTH = 64
PACK_FLOATS_FROM = 8  # lists and deques of at least this many floats are packed (``$fl``/``$qf``)


class StateCodecError(PlantstreamError):
    """A value cannot be encoded, or bytes are not a state this codec wrote."""


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _slots(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        for name in getattr(klass, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return names


class StateCodec:
    """Encode/decode object trees; ``classes`` are the only types it will instantiate."""

    format = FORMAT

    def __init__(self, classes: Iterable[type]) -> None:
        self._by_name = {_qualname(c): c for c in classes}
        self._names = {c: n for n, c in self._by_name.items()}

    # encoding -------------------------------------------------------------------------------
    def encode(self, obj: Any) -> bytes:
        return json.dumps(self._enc(obj, 0), separators=(",", ":"), allow_nan=False).encode()

    def _enc(self, o: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise StateCodecError("state nested deeper than 64 levels")
        t = type(o)
        if o is None or t is bool or t is str or t is int:
            return o
        if t is float:
            return o if math.isfinite(o) else {"$f": repr(o)}
        d = depth + 1
        if (t is list or t is deque) and len(o) >= PACK_FLOATS_FROM and all(type(v) is float for v in o):
            # Score windows and the like: thousands of floats per detector, which JSON writes
            # digit by digit (most of a snapshot's encoding time). Packed as little-endian
            # float64, they read back as the same Python floats, NaN and -0.0 included.
            packed = base64.b64encode(np.asarray(o, dtype="<f8").tobytes()).decode()
            return {"$fl": packed} if t is list else {"$qf": packed, "maxlen": o.maxlen}
        if t is list:
            return [self._enc(v, d) for v in o]
        if t is dict:
            if all(type(k) is str and not k.startswith("$") for k in o):
                return {k: self._enc(v, d) for k, v in o.items()}
            return {"$d": [[self._enc(k, d), self._enc(v, d)] for k, v in o.items()]}
        if t is tuple:
            return {"$t": [self._enc(v, d) for v in o]}
        if t is frozenset or t is set:
            items = [self._enc(v, d) for v in o]  # iteration order kept: sums over a set stay exact
            return {"$fs" if t is frozenset else "$s": items}
        if t is deque:
            return {"$q": [self._enc(v, d) for v in o], "maxlen": o.maxlen}
        if t is bytes:
            return {"$b": base64.b64encode(o).decode()}
        if t is np.ndarray:
            if o.dtype.kind not in "biuf":
                raise StateCodecError(f"numpy array of dtype {o.dtype} cannot be encoded")
            # memory order is kept too: BLAS sums a Fortran-ordered matrix in another order
            order = "F" if o.flags.f_contiguous and not o.flags.c_contiguous else "C"
            return {"$nd": o.dtype.str, "shape": list(o.shape), "order": order,
                    "data": base64.b64encode(o.tobytes(order=order)).decode()}
        if isinstance(o, np.generic):  # kept as a numpy scalar: its arithmetic differs from float's
            if o.dtype.kind not in "biuf":
                raise StateCodecError(f"numpy scalar of dtype {o.dtype} cannot be encoded")
            return {"$ns": o.dtype.str, "data": base64.b64encode(o.tobytes()).decode()}
        name = self._names.get(t)
        if name is None:
            raise StateCodecError(f"{_qualname(t)} is not in this state codec's class list")
        fields: dict[str, Any] = {}
        if hasattr(o, "__dict__"):
            fields.update(vars(o))
        for slot in _slots(t):
            if hasattr(o, slot):
                fields[slot] = getattr(o, slot)
        derived = getattr(t, "__derived__", ())
        return {"$o": name, "f": {k: self._enc(v, d) for k, v in fields.items() if k not in derived}}

    # decoding -------------------------------------------------------------------------------
    def decode(self, data: bytes) -> Any:
        try:
            tree = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise StateCodecError(f"state is not {FORMAT}: {exc}") from None
        return self._dec(tree, 0)

    def _dec(self, v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise StateCodecError("state nested deeper than 64 levels")
        if v is None or isinstance(v, bool | int | float | str):
            return v
        d = depth + 1
        if isinstance(v, list):
            return [self._dec(x, d) for x in v]
        if not isinstance(v, dict):
            raise StateCodecError(f"unexpected JSON value {type(v).__name__}")
        if "$o" in v:
            return self._object(v, d)
        if "$f" in v:
            return float(v["$f"])
        if "$d" in v:
            return {self._dec(k, d): self._dec(x, d) for k, x in v["$d"]}
        if "$t" in v:
            return tuple(self._dec(x, d) for x in v["$t"])
        if "$fs" in v:
            return frozenset(self._dec(x, d) for x in v["$fs"])
        if "$s" in v:
            return {self._dec(x, d) for x in v["$s"]}
        if "$q" in v:
            return deque((self._dec(x, d) for x in v["$q"]), maxlen=v.get("maxlen"))
        if "$fl" in v:
            return _floats(v["$fl"])
        if "$qf" in v:
            return deque(_floats(v["$qf"]), maxlen=v.get("maxlen"))
        if "$b" in v:
            return base64.b64decode(v["$b"])
        if "$nd" in v:
            dtype = np.dtype(v["$nd"])
            if dtype.kind not in "biuf":
                raise StateCodecError(f"numpy dtype {dtype} is not allowed in state")
            order = "F" if v.get("order") == "F" else "C"
            flat = np.frombuffer(base64.b64decode(v["data"]), dtype=dtype)
            return flat.reshape(v["shape"], order=order).copy(order=order)
        if "$ns" in v:
            dtype = np.dtype(v["$ns"])
            if dtype.kind not in "biuf":
                raise StateCodecError(f"numpy dtype {dtype} is not allowed in state")
            return np.frombuffer(base64.b64decode(v["data"]), dtype=dtype)[0]
        return {k: self._dec(x, d) for k, x in v.items()}

    def _object(self, v: dict[str, Any], depth: int) -> Any:
        cls = self._by_name.get(v["$o"])
        if cls is None:
            raise StateCodecError(f"state names class {v['$o']!r}, which this service does not allow")
        obj = object.__new__(cls)
        slots = set(_slots(cls))
        fields: dict[str, Any] = {}
        for name, value in v["f"].items():
            if not isinstance(name, str) or not name.isidentifier():
                raise StateCodecError(f"bad attribute name {name!r} in state of {v['$o']}")
            fields[name] = self._dec(value, depth)
        upgrade = getattr(cls, "__setstate__", None)
        if upgrade is not None:  # the class fills in fields older versions did not have
            upgrade(obj, fields)
            return obj
        for name, value in fields.items():
            if name in slots or not hasattr(obj, "__dict__"):
                object.__setattr__(obj, name, value)
            else:
                obj.__dict__[name] = value
        return obj


def _floats(packed: Any) -> list[float]:
    """Python floats from a ``$fl``/``$qf`` value (little-endian float64, base64)."""
    try:
        return np.frombuffer(base64.b64decode(packed, validate=True), dtype="<f8").tolist()
    except (TypeError, ValueError) as exc:
        raise StateCodecError(f"packed floats are not valid: {exc}") from None
