"""`python -m podidentity.mic` / `kv-mic`: parse the settings once, build MIC, run it."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType

from azcommon.log import setup_logging
from kube.client import load_config
from podidentity.mic.app import Mic, serve_probe
from podidentity.mic.cloud import CloudConfigError, load_cloud_config, make_credential
from podidentity.mic.settings import parse_settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    setup_logging(settings.log_format, settings.log_level)
    try:
        cloud = load_cloud_config(settings.cloud_config)
    except CloudConfigError as exc:
        print(f"kv-mic: {exc}", file=sys.stderr)
        return 2
    ca = str(settings.ca_bundle) if settings.ca_bundle else None
    credential = make_credential(cloud, settings.authority_host or cloud.authority_host, ca)
    mic = Mic(
        settings, load_config(settings.kubeconfig), credential,
        settings.arm_endpoint or cloud.arm_endpoint, ca_bundle=ca,
        immutable=(cloud.own_identity,) if cloud.own_identity else (),
    )  # fmt: skip
    probe = serve_probe(settings.probe_addr, mic)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        mic.stop()

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        mic.force_resync()  # kill -HUP: recompute everything now

    signal.signal(signal.SIGHUP, on_hangup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        mic.run()
    finally:
        lost = mic.elector.lost.is_set()
        mic.close()
        if probe is not None:
            probe.shutdown()
    # A lost lease ends the process: the Deployment starts a fresh replica with no stale state.
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
