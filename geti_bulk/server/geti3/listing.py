"""Query parameters of ``GET …/dataset/media`` and ``…/media/ids`` (GETI3_API.md §8, §15;
``routers/media.py``, ``repositories/media_repo.py``, ``repositories/filters.py``) turned into
SQL on the same columns Geti uses.

``start_date``/``end_date`` are compared as text against ``created_at``, which holds
``YYYY-MM-DD HH:MM:SS``, with the bound formatted as SQLAlchemy does (with microseconds):
a ``start_date`` equal to a media's own second therefore excludes it (§15).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .annotation_body import SUBSETS
from .errors import ApiError, ErrorList, error, invalid
from .validate import BAD, v_enum, v_int, v_uuid

ANNOTATION_STATUSES = ("with_annotations", "missing_annotations")
MAX_LIMIT = 100
MAX_OFFSET = 2_147_483_647
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([Tt _]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?([Zz]|[+-]\d{2}:?\d{2})?$")


@dataclass
class MediaQuery:
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    limit: int = 10
    offset: int = 0
    descending: bool = True

    @property
    def clause(self) -> str:
        return " AND ".join(self.where)


def parse_datetime(raw: str, loc: tuple[str, str], errs: ErrorList) -> Any:
    """Pydantic's lax datetime: ISO 8601 (date alone = midnight) or a Unix timestamp."""
    text = raw.strip()
    try:
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            stamp = float(text)
            stamp = stamp / 1000 if abs(stamp) > 2e10 else stamp
            return dt.datetime.fromtimestamp(stamp, dt.UTC)
        if _ISO.match(text):
            value = dt.datetime.fromisoformat(text.replace("z", "Z").replace("_", "T"))
            return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
    except (ValueError, OverflowError, OSError):
        pass
    reason = "input is too short" if len(text) < 10 else "invalid character in year" if not \
        text[:4].isdigit() else "unexpected extra characters at the end of the input"
    errs.append(error("datetime_from_date_parsing", loc, f"Input should be a valid datetime or "
                      f"date, {reason}", raw, {"error": reason}))
    return BAD


def _sql_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def parse_media_query(request: web.Request, project_id: str, paged: bool) -> MediaQuery:
    """Validate every parameter (one 422 with all errors), then build the filter."""
    q = request.query
    errs: ErrorList = []

    def one(name: str) -> str | None:
        values = q.getall(name, [])
        return values[-1] if values else None

    query = MediaQuery(where=["media.project_id = ?", "media.type != 'video_frame'"],
                       params=[project_id])
    if paged:
        if (raw := one("limit")) is not None:
            query.limit = v_int(raw, ("query", "limit"), errs, ge=1, le=MAX_LIMIT)
        if (raw := one("offset")) is not None:
            query.offset = v_int(raw, ("query", "offset"), errs, ge=0, le=MAX_OFFSET)
        if (raw := one("sort_by")) is not None:
            v_enum(raw, ("query", "sort_by"), errs, ("upload_date",))
        if (raw := one("sort_direction")) is not None:
            query.descending = v_enum(raw, ("query", "sort_direction"), errs,
                                      ("asc", "desc")) != "asc"
    dates = {name: parse_datetime(raw, ("query", name), errs)
             for name in ("start_date", "end_date") if (raw := one(name)) is not None}
    status = one("annotation_status")
    if status is not None:
        status = v_enum(status, ("query", "annotation_status"), errs, ANNOTATION_STATUSES)
    labels = [v_uuid(v, ("query", "labels", i), errs) for i, v in enumerate(q.getall("labels", []))]
    subsets = [v_enum(v, ("query", "subsets", i), errs, SUBSETS)
               for i, v in enumerate(q.getall("subsets", []))]
    view = one("dataset_view_id")
    if view is not None:
        view = v_uuid(view, ("query", "dataset_view_id"), errs)
    if errs:
        raise invalid(errs)
    _dates(query, dates.get("start_date"), dates.get("end_date"))
    _annotation_status(query, status)
    _labels(query, labels)
    if subsets:
        query.where.append(f"dataset_items.subset IN ({', '.join('?' for _ in subsets)})")
        query.params.extend(subsets)
    if view is not None:  # dataset views are not modelled here: none exists
        raise ApiError(404, f"DatasetView with ID {view} not found.")
    return query


def _dates(query: MediaQuery, start: dt.datetime | None, end: dt.datetime | None) -> None:
    if start is not None and end is not None and start > end:
        raise ApiError(422, "Start date must be before end date.")
    if start is not None:
        query.where.append("media.created_at >= ?")
        query.params.append(_sql_time(start))
    if end is not None:
        query.where.append("media.created_at < ?")
        query.params.append(_sql_time(end))


def _annotation_status(query: MediaQuery, status: str | None) -> None:
    """An item with ``[]`` is annotated; a video counts as annotated through its frames (none
    here, as frames cannot be annotated on this server)."""
    if status == "with_annotations":
        query.where.append("(media.type != 'video' AND dataset_items.annotation_data IS NOT NULL)")
    elif status == "missing_annotations":
        query.where.append("((media.type != 'video' AND dataset_items.annotation_data IS NULL)"
                           " OR (media.type = 'video' AND media.frame_count > 0))")


def _labels(query: MediaQuery, labels: list[str]) -> None:
    if labels:
        marks = ", ".join("?" for _ in labels)
        query.where.append("(media.type != 'video' AND EXISTS (SELECT 1 FROM dataset_item_labels"
                           f" AS l WHERE l.item_id = media.id AND l.label_id IN ({marks})))")
        query.params.extend(labels)
