"""Everything that knows Geti 2.x's REST API (GETI_API.md §1–§6).

Kept behind `GetiClient` so that a second API generation (Geti 3's
`/api/projects/{id}/dataset/media`, GETI_API.md §8) can sit beside it later.
"""

from geti_bulk.geti.client import GetiClient, Target
from geti_bulk.geti.models import Dataset, Label, MediaItem, Project, Task

__all__ = ["Dataset", "GetiClient", "Label", "MediaItem", "Project", "Target", "Task"]
