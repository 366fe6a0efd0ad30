"""`python -m podidentity.nmi` / `kv-nmi`: the composition root."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence

from azcommon.log import setup_logging
from podidentity.nmi.app import build
from podidentity.nmi.config import parse_settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    setup_logging(settings.log_format, settings.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    nmi = build(settings)
    try:
        stop.wait()
    finally:
        nmi.stop()  # the nat rules go first: pods reach IMDS directly again
    return 0


if __name__ == "__main__":
    sys.exit(main())
