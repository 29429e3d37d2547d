"""`python -m receiver` is the same as the `aimusic-relay` command."""

from __future__ import annotations

from receiver.cli import main

if __name__ == "__main__":
    main()
