"""``media:query`` filters: Geti's rule grammar, validated like Geti, turned into SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from .replies import GetiError, PlainError

MAX_FILTER_STRING = 255


class Op(Enum):
    GREATER = "$gt"
    LESS = "$lt"
    GREATER_OR_EQUAL = "$gte"
    LESS_OR_EQUAL = "$lte"
    EQUAL = "$eq"
    NOT_EQUAL = "$ne"
    IN = "$in"
    NOT_IN = "$nin"
    CONTAINS = "$regex"


_EQ = [Op.EQUAL, Op.NOT_EQUAL]
_GL = [Op.GREATER, Op.LESS]
_ALL_GL = [Op.GREATER, Op.LESS, Op.GREATER_OR_EQUAL, Op.LESS_OR_EQUAL]
_EXIST = [Op.IN, Op.NOT_IN]
_SQL_OPS = {
    Op.GREATER: ">", Op.LESS: "<", Op.GREATER_OR_EQUAL: ">=", Op.LESS_OR_EQUAL: "<=",
    Op.EQUAL: "=", Op.NOT_EQUAL: "!=",
}


@dataclass(frozen=True, slots=True)
class _Field:
    operators: list[Op]
    kind: type


# Same names, order, operators and value types as Geti's DatasetFilterField.
FIELDS: dict[str, _Field] = {
    "MEDIA_UPLOAD_DATE": _Field(_GL, str),
    "MEDIA_HEIGHT": _Field(_ALL_GL + _EQ, int),
    "MEDIA_WIDTH": _Field(_ALL_GL + _EQ, int),
    "MEDIA_NAME": _Field([*_EQ, Op.CONTAINS], str),
    "LABEL_ID": _Field(_EQ + _EXIST, str),
    "ANNOTATION_CREATION_DATE": _Field(_GL, str),
    "ANNOTATION_SCENE_STATE": _Field([Op.EQUAL, Op.IN], str),
    "SHAPE_TYPE": _Field(_EQ + _EXIST, str),
    "SHAPE_AREA_PERCENTAGE": _Field(_ALL_GL + _EQ, float),
    "SHAPE_AREA_PIXEL": _Field(_ALL_GL + _EQ, int),
    "USER_NAME": _Field(_EQ + _EXIST, str),
    "SUBSET": _Field([Op.EQUAL], str),
    "MEDIA_TYPE": _Field([Op.EQUAL], str),
    "MEDIA_SIZE": _Field(_ALL_GL + _EQ, int),
    "VIDEO_DURATION": _Field(_ALL_GL + _EQ, int),
    "VIDEO_FRAME_RATE": _Field(_ALL_GL + _EQ, float),
    "VIDEO_FRAME_COUNT": _Field(_ALL_GL + _EQ, int),
}

SORT_COLUMNS = {
    "media_upload_date": "upload_ts",
    "media_name": "name COLLATE NOCASE",
    "media_width": "width",
    "media_height": "height",
    "media_size": "size",
    "annotation_creation_date": "upload_ts",
}

_NUMERIC_COLUMNS = {
    "MEDIA_HEIGHT": "height", "MEDIA_WIDTH": "width", "MEDIA_SIZE": "size",
    "VIDEO_DURATION": "duration", "VIDEO_FRAME_RATE": "frame_rate",
    "VIDEO_FRAME_COUNT": "frame_count",
}
_LABELLED = "label_ids != '[]'"


def invalid_filter(message: str) -> GetiError:
    return GetiError(400, "invalid_filter", message)


@dataclass
class SqlFilter:
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)


def _key(rule: dict[str, Any], key: str) -> Any:
    try:
        return rule[key]
    except KeyError:
        raise invalid_filter(
            f"Invalid filter provided. Missing key {key} in dictionary {rule}"
        ) from None
    except TypeError:
        raise PlainError() from None  # Geti indexes a non-dict: unhandled → 500


def _enum_key(value: Any) -> str:
    if not isinstance(value, str):
        raise PlainError()  # ``key.upper()`` on a non-string: unhandled → 500
    return value.upper()


def parse_filter(query: Any) -> SqlFilter:
    """Validate a media:query body (``{}`` = everything) and return SQL conditions."""
    if query is None or query == {}:
        return SqlFilter()
    rules = _key(query, "rules")
    if not isinstance(rules, list):
        raise PlainError()
    result = SqlFilter()
    for rule in rules:
        field_name = _enum_key(_key(rule, "field"))
        if field_name not in FIELDS:
            raise invalid_filter(
                f"Invalid filter provided. {rule['field']} is not a valid value for enum "
                f"DatasetFilterField. Please choose one of {list(FIELDS)}"
            )
        op_name = _enum_key(_key(rule, "operator"))
        if op_name not in Op.__members__:
            raise invalid_filter(
                f"Invalid filter provided. {rule['operator']} is not a valid value for enum "
                f"DatasetFilterOperator. Please choose one of {list(Op.__members__)}"
            )
        op = Op[op_name]
        value = _key(rule, "value")
        spec = FIELDS[field_name]
        _validate(field_name, spec, op, value)
        _to_sql(field_name, op, value, result)
    if not rules:
        raise invalid_filter(
            'Can not create filter with a condition but no rules. Pass "{}" if '
            "you want a filter that retrieves all items."
        )
    return result


def _validate(name: str, spec: _Field, op: Op, value: Any) -> None:
    if op not in spec.operators:
        raise invalid_filter(
            f"Operator {op.value} is not allowed for {name}. "
            f"Allowed operators are {[o.name for o in spec.operators]}"
        )
    values: Sequence[Any]
    if isinstance(value, Sequence) and not isinstance(value, str):
        if op not in _EXIST:
            raise invalid_filter(
                f"Expected a single value for operator '{op.value}', "
                f"but got a sequence instead: '{value}'."
            )
        values = value
    else:
        if op in _EXIST:
            raise invalid_filter(
                f"Expected a sequence for operator '{op.value}', "
                f"but got a single value instead: '{value}'."
            )
        values = [value]
    for item in values:
        try:
            spec.kind(item)
        except ValueError:
            raise invalid_filter(f"Value for field {name} must be of type {spec.kind}") from None
        except TypeError:
            raise PlainError() from None
    try:
        if spec.kind is int and (value > 2**63 - 1 or value < -(2**63)):
            raise invalid_filter(
                f"Value for field {name} is larger than 64 bits. This is not allowed."
            )
        if spec.kind is str and len(value) > MAX_FILTER_STRING:
            raise invalid_filter(
                f"String length for field {name} is longer than {MAX_FILTER_STRING}. "
                "This is not allowed."
            )
    except TypeError:
        raise PlainError() from None  # Geti compares e.g. a str with an int: unhandled


def _epoch(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PlainError() from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _to_sql(name: str, op: Op, value: Any, out: SqlFilter) -> None:
    sql_op = _SQL_OPS.get(op)
    items = list(value) if op in _EXIST else [value]
    marks = ", ".join("?" for _ in items)
    if name == "MEDIA_NAME":
        if op is Op.CONTAINS:
            out.where.append("instr(lower(name), lower(?)) > 0")
        else:
            out.where.append(f"name {sql_op} ?")
        out.params.append(value)
    elif name == "MEDIA_TYPE":
        out.where.append("type = ?")
        out.params.append(str(value).lower())
    elif name in _NUMERIC_COLUMNS:
        column = _NUMERIC_COLUMNS[name]
        out.where.append(f"{column} IS NOT NULL AND {column} {sql_op} ?")
        out.params.append(value)
    elif name in ("MEDIA_UPLOAD_DATE", "ANNOTATION_CREATION_DATE"):
        labelled = f"{_LABELLED} AND " if name == "ANNOTATION_CREATION_DATE" else ""
        out.where.append(f"{labelled}upload_ts {sql_op} ?")
        out.params.append(_epoch(value))
    elif name == "LABEL_ID":
        exists = f"EXISTS (SELECT 1 FROM json_each(label_ids) WHERE value IN ({marks}))"
        negate = op in (Op.NOT_EQUAL, Op.NOT_IN)
        out.where.append(f"NOT {exists}" if negate else exists)
        out.params.extend(str(v).lower() for v in items)
    elif name == "ANNOTATION_SCENE_STATE":
        states = {str(v).lower() for v in items}
        wanted = []
        if "annotated" in states:
            wanted.append(_LABELLED)
        if states & {"unannotated", "none"}:
            wanted.append(f"NOT ({_LABELLED})")
        out.where.append("(" + " OR ".join(wanted) + ")" if wanted else "0")
    elif name == "SHAPE_TYPE":
        has_rect = "rectangle" in {str(v).lower() for v in items}
        negate = op in (Op.NOT_EQUAL, Op.NOT_IN)
        out.where.append(_LABELLED if has_rect != negate else f"NOT ({_LABELLED})")
    elif name == "SHAPE_AREA_PERCENTAGE":
        out.where.append(f"{_LABELLED} AND 1.0 {sql_op} ?")
        out.params.append(value)
    elif name == "SHAPE_AREA_PIXEL":
        out.where.append(f"{_LABELLED} AND width * height {sql_op} ?")
        out.params.append(value)
    elif name == "USER_NAME":
        negate = op in (Op.NOT_EQUAL, Op.NOT_IN)
        out.where.append(f"uploader_id {'NOT IN' if negate else 'IN'} ({marks})")
        out.params.extend(items)
    elif name == "SUBSET":  # uploaded media are all unassigned until training
        out.where.append("1" if str(value).upper() == "UNASSIGNED" else "0")
