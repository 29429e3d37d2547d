"""Which producer task types the provider has retired: one list, read by the client (which
refuses them before sending) and by the sandbox (which answers 410 like the provider).

The sandbox's tests keep their own copy of the list from the upstream documentation, so the
emulator still checks this one rather than agreeing with it by construction.
"""

from __future__ import annotations

__all__ = ["RETIRED_PRODUCER_TASK_TYPES", "is_retired_task_type"]

RETIRED_PRODUCER_TASK_TYPES = frozenset(
    {
        "cover_music",
        "extend_music",
        "replace_music",
        "swap_music_vocals",
        "swap_music_sound",
        "music_variation",
    }
)
"""Producer task types the provider answers 410 for; their `*_upload_*` forms are retired too."""


def is_retired_task_type(task_type: str) -> bool:
    """`cover_music`, `cover_upload_music`, `swap_upload_music_vocals`, ... are retired."""
    if task_type in RETIRED_PRODUCER_TASK_TYPES:
        return True
    parts = task_type.split("_")
    return (
        "upload" in parts
        and "_".join(p for p in parts if p != "upload") in RETIRED_PRODUCER_TASK_TYPES
    )
