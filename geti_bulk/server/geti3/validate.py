"""Pydantic-v2-like (lax mode) checks of JSON bodies and query values, collecting every
error the way FastAPI reports them in a 422 (GETI3_API.md §3).

Each ``v_*`` returns the converted value, or ``BAD`` after appending an error.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

from .errors import ErrorList, Loc, error, missing, uuid_error


class _Bad:
    def __repr__(self) -> str:
        return "BAD"


BAD: Final = _Bad()
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def v_int(value: Any, loc: Loc, errs: ErrorList, ge: int | None = None,
          le: int | None = None) -> Any:
    result: int
    if isinstance(value, bool):
        result = int(value)
    elif isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            errs.append(error("finite_number", loc, "Input should be a finite number", value))
            return BAD
        if value != int(value):
            errs.append(error("int_from_float", loc, "Input should be a valid integer, got a "
                              "number with a fractional part", value))
            return BAD
        result = int(value)
    elif isinstance(value, str):
        try:
            result = int(value.strip())
        except ValueError:
            errs.append(error("int_parsing", loc, "Input should be a valid integer, unable to "
                              "parse string as an integer", value))
            return BAD
    else:
        errs.append(error("int_type", loc, "Input should be a valid integer", value))
        return BAD
    return _bounds(result, value, loc, errs, ge, le)


def v_float(value: Any, loc: Loc, errs: ErrorList, ge: float | None = None) -> Any:
    result: float
    if isinstance(value, bool | int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            errs.append(error("float_parsing", loc, "Input should be a valid number, unable to "
                              "parse string as a number", value))
            return BAD
    else:
        errs.append(error("float_type", loc, "Input should be a valid number", value))
        return BAD
    return _bounds(result, value, loc, errs, ge, None)


def _bounds(result: Any, value: Any, loc: Loc, errs: ErrorList, ge: Any, le: Any) -> Any:
    if ge is not None and result < ge:
        errs.append(error("greater_than_equal", loc, f"Input should be greater than or equal "
                          f"to {ge}", value, {"ge": ge}))
        return BAD
    if le is not None and result > le:
        errs.append(error("less_than_equal", loc, f"Input should be less than or equal to {le}",
                          value, {"le": le}))
        return BAD
    return result


def v_str(value: Any, loc: Loc, errs: ErrorList, min_len: int | None = None,
          max_len: int | None = None, pattern: str | None = None) -> Any:
    if not isinstance(value, str):
        errs.append(error("string_type", loc, "Input should be a valid string", value))
        return BAD
    if min_len is not None and len(value) < min_len:
        plural = "character" if min_len == 1 else "characters"
        errs.append(error("string_too_short", loc, f"String should have at least {min_len} "
                          f"{plural}", value, {"min_length": min_len}))
        return BAD
    if max_len is not None and len(value) > max_len:
        errs.append(error("string_too_long", loc, f"String should have at most {max_len} "
                          "characters", value, {"max_length": max_len}))
        return BAD
    if pattern is not None and not re.search(pattern, value):
        errs.append(error("string_pattern_mismatch", loc, f"String should match pattern "
                          f"'{pattern}'", value, {"pattern": pattern}))
        return BAD
    return value


def v_bool(value: Any, loc: Loc, errs: ErrorList) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, str | int | float):
        errs.append(error("bool_parsing", loc, "Input should be a valid boolean, unable to "
                          "interpret input", value))
    else:
        errs.append(error("bool_type", loc, "Input should be a valid boolean", value))
    return BAD


def v_uuid(value: Any, loc: Loc, errs: ErrorList) -> Any:
    problem = uuid_error(loc, value)
    if problem is not None:
        errs.append(problem)
        return BAD
    return str(uuid.UUID(value))


def expected_text(values: Sequence[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def v_enum(value: Any, loc: Loc, errs: ErrorList, values: Sequence[str]) -> Any:
    if isinstance(value, str) and value in values:
        return value
    text = expected_text(values)
    errs.append(error("enum", loc, f"Input should be {text}", value, {"expected": text}))
    return BAD


def v_list(value: Any, loc: Loc, errs: ErrorList,
           item: Callable[[Any, Loc, ErrorList], Any]) -> Any:
    if not isinstance(value, list | tuple):
        errs.append(error("list_type", loc, "Input should be a valid list", value))
        return BAD
    out = [item(v, (*loc, i), errs) for i, v in enumerate(value)]
    return BAD if any(v is BAD for v in out) else out


def v_object(value: Any, loc: Loc, errs: ErrorList, class_name: str | None) -> Any:
    """A model: a dict. ``class_name`` None means the request body itself."""
    if isinstance(value, dict):
        return value
    if class_name is None:
        errs.append(error("model_attributes_type", loc, "Input should be a valid dictionary or "
                          "object to extract fields from", value))
    else:
        errs.append(error("model_type", loc, f"Input should be a valid dictionary or instance "
                          f"of {class_name}", value, {"class_name": class_name}))
    return BAD


def field(obj: dict[str, Any], key: str, loc: Loc, errs: ErrorList,
          check: Callable[[Any, Loc, ErrorList], Any], default: Any = BAD) -> Any:
    """``obj[key]`` checked; a missing key is an error unless a default is given."""
    if key not in obj:
        if default is BAD:
            errs.append(missing((*loc, key), obj))
        return default
    if obj[key] is None and default is None:
        return None  # ``X | None`` fields accept null
    return check(obj[key], (*loc, key), errs)
