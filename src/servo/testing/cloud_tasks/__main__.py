"""``python -m servo.testing.cloud_tasks``: run the local Cloud Tasks server alone.

Prints the gRPC address (for ``SERVO_CLOUD_CLOUD_TASKS_EMULATOR_HOST``) and the JWKS
URL (for ``SERVO_WORKER_OIDC_JWKS_URL``) as one JSON line on stdout, then serves until
SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from servo.testing.cloud_tasks.faults import Faults
from servo.testing.cloud_tasks.options import ServerOptions
from servo.testing.cloud_tasks.server import LocalCloudTasks


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m servo.testing.cloud_tasks",
        description="A local Cloud Tasks server for the official client (gRPC, plaintext).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, default=8123, help="gRPC port (0: any free one)")
    parser.add_argument("--jwks-port", type=int, default=0, help="JWKS HTTP port (0: any)")
    parser.add_argument(
        "--dedup-window", type=float, default=3600.0, help="seconds a name stays taken"
    )
    parser.add_argument(
        "--auto-create-queues", action="store_true", help="create unknown queues on first task"
    )
    parser.add_argument("--issuer", default="https://accounts.google.com", help="OIDC iss claim")
    parser.add_argument("--drop", type=float, default=0.0, help="probability a push is lost")
    parser.add_argument("--duplicate", type=float, default=0.0, help="probability it is sent twice")
    parser.add_argument("--delay", type=float, default=0.0, help="probability it is delayed")
    parser.add_argument("--delay-s", type=float, default=0.0, help="seconds of a delay")
    parser.add_argument("--seed", type=int, default=0, help="seed of the faults")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C; the exit code."""
    args = _parser().parse_args(argv)
    options = ServerOptions(
        dedup_window_s=args.dedup_window,
        auto_create_queues=args.auto_create_queues,
        issuer=args.issuer,
    )
    faults = Faults(args.drop, args.duplicate, args.delay, args.delay_s, args.seed)
    server = LocalCloudTasks(
        options, faults=faults, host=args.host, port=args.port, jwks_port=args.jwks_port
    )
    done = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with server:
        line = {"grpc": server.address, "jwks_url": server.jwks_url, "issuer": options.issuer}
        print(json.dumps(line), flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
