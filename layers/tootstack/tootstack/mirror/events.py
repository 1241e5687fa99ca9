"""The mirror function's two event shapes (functions/mirror), one model each:

- `MirrorRequest`: {"images": [...]} from the daily schedule, the first-boot and upgrade state machines
  and the console;
- the custom resource Custom::ImageMirror, properties `ImageMirrorProperties` ({"Images": [...]}), read
  through tootstack.cfn_custom.parse_request.
Each entry (an image reference or {"source", "repository", "name"}) is checked by service.parse_jobs,
which names the entry at fault, before anything is copied.
"""

from __future__ import annotations

from typing import Any, Union

from tootstack.contracts import Event, parse

Entry = Union[str, dict[str, Any]]


class MirrorRequest(Event):
    images: list[Entry]


class ImageMirrorProperties(Event):
    Images: list[Entry]


def parse_mirror_request(event: Any) -> MirrorRequest:
    return parse(MirrorRequest, event, "mirror request")
