"""What goes over the wire: strict JSON in (finite numbers only), finite JSON out, numpy arrays as base64.

Shared by the server and ``hill_app.client.remote``; imports neither FastAPI nor torch.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

ARRAY_KEY = "__ndarray__"


class WireError(ValueError):
    """A message is not the JSON this API accepts; the text says what is wrong."""


def _reject_constant(name: str) -> Any:
    raise WireError(f"non-finite number {name} is not accepted (send finite numbers, or null)")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise WireError(f"number {text[:40]} is out of range (finite numbers only)")
    return v


def loads_strict(data: bytes | str) -> Any:
    """Parse JSON, refusing NaN, Infinity, numbers that overflow to infinity and absurd nesting."""
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except WireError:
        raise
    except RecursionError:
        raise WireError("JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError; so is the int-digits limit
        raise WireError(f"not valid JSON: {e}") from None


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """An array as {"__ndarray__": base64 of its C-order bytes (little-endian), "dtype", "shape"}.
    The bytes may hold NaN (a diverged model's latent points); JSON numbers never do."""
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return {
        ARRAY_KEY: base64.b64encode(a.tobytes()).decode("ascii"),
        "dtype": a.dtype.str.lstrip("<|="),
        "shape": list(a.shape),
    }


_DTYPES = {
    "f4": np.float32,
    "f8": np.float64,
    "i8": np.int64,
    "i4": np.int32,
    "i2": np.int16,
    "i1": np.int8,
    "u1": np.uint8,
    "u2": np.uint16,
    "b1": np.bool_,
}


def decode_array(d: dict[str, Any]) -> np.ndarray:
    dt = _DTYPES.get(str(d.get("dtype")))
    if dt is None:
        raise WireError(f"array dtype {d.get('dtype')!r} is not one of {', '.join(_DTYPES)}")
    shape = tuple(int(s) for s in d["shape"])
    raw = base64.b64decode(d[ARRAY_KEY])
    a = np.frombuffer(raw, dtype=np.dtype(dt).newbyteorder("<"))
    if a.size != int(np.prod(shape)):
        raise WireError(f"array of {a.size} values does not fit shape {shape}")
    return a.reshape(shape).astype(dt, copy=True)


def decode_arrays(obj: Any) -> Any:
    """Replace every encoded array inside ``obj`` by a numpy array."""
    if isinstance(obj, dict):
        if ARRAY_KEY in obj:
            return decode_array(obj)
        return {k: decode_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_arrays(v) for v in obj]
    return obj


def sanitize(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays to Python, tuples to lists, NaN and infinities to None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {str(k): sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            return sanitize(obj.tolist())
        return obj.tolist()
    if isinstance(obj, np.generic):
        return sanitize(obj.item())
    if hasattr(obj, "tolist"):  # torch tensors that slipped into an event
        return sanitize(obj.tolist())
    return str(obj)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def dumps(obj: Any) -> str:
    """Finite JSON text. Fast path for clean data; anything holding NaN or infinity goes through sanitize."""
    try:
        return json.dumps(obj, allow_nan=False, default=_default, separators=(",", ":"))
    except (ValueError, TypeError):  # a NaN somewhere, or a non-string key
        return json.dumps(sanitize(obj), allow_nan=False, separators=(",", ":"))
