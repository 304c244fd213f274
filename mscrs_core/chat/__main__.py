"""``python -m mscrs_core.chat --checkpoint DIR [--script FILE]``: the same as ``mscrs chat``."""
from mscrs_core.chat.cli import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
