"""Contender 4: the Geti SDK itself (``pip install geti-sdk``), only when importable.

``Geti(host, token)`` then ``ImageClient.upload_folder(folder, max_threads=5)``: the
SDK's own upload path (GETI_API.md §6, §11). The SDK speaks HTTPS only and verifies the
server against ``REQUESTS_CA_BUNDLE``. It needs a project name (``--project``) instead
of an upload URL; ``--url`` gives the server's base URL. Run with geti-sdk 2.13.1 from a
separate venv named by ``GETI_BULK_SDK_PYTHON`` (its dependencies are heavy).
"""

from __future__ import annotations

import argparse
import sys

from _common import finish, token


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True, help="the server's base URL (https://…)")
    p.add_argument("--project", required=True)
    p.add_argument("--concurrency", type=int, default=5)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("folder")
    args = p.parse_args()

    from geti_sdk import Geti
    from geti_sdk.rest_clients import ImageClient

    geti = Geti(host=args.url, token=token(), verify_certificate=True)
    project = geti.get_project(project_name=args.project)
    images = ImageClient(session=geti.session, workspace_id=geti.workspace_id, project=project)
    # returns every image in the dataset after the upload; the folder is all there is
    media = images.upload_folder(args.folder, n_images=args.limit or -1,
                                 max_threads=args.concurrency)
    return finish(len(media), 0)


if __name__ == "__main__":
    sys.exit(main())
