"""``python -m linkprobe``."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Imported here, inside the try: a Ctrl-C while linkprobe.cli is still being imported
    # (tens of milliseconds at start-up) exits 130 quietly instead of with a traceback.
    try:
        from linkprobe.cli import main_exit
    except KeyboardInterrupt:
        sys.exit(130)
    main_exit()
