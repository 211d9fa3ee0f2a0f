"""``servo emulate gcp``: the serverless mode on this machine, in one command.

It starts fake-gcs-server, PostgreSQL (the local server, else a throwaway cluster),
the local Cloud Tasks server, one reconciler and ``--workers`` workers (real ``servo
serve`` processes) and a sweep scheduler (`servo.testing.emulator`), writes their
shared config file and prints ``SERVO_CONFIG=<path>`` on stdout. In another shell::

    export SERVO_CONFIG=<path>
    servo materialize --defs definitions.py

runs through Cloud Tasks pushes to the workers, exactly as on Cloud Run. Ctrl-C (or
SIGTERM) stops everything and deletes the emulator's folder unless ``--dir`` named
one.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from servo.cli._session import resolve_target
from servo.cli.options import DefsOption

if TYPE_CHECKING:
    from types import FrameType

emulate_app = typer.Typer(
    help="Run a scale-out mode on this machine (every service on loopback).",
    no_args_is_help=True,
)


@emulate_app.command("gcp")
def emulate_gcp(
    defs: DefsOption = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes.")] = 2,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="Keep the config, logs and home here (default: a temporary folder)."
        ),
    ] = None,
    sweep_interval: Annotated[
        float, typer.Option("--sweep-interval", min=0, help="Seconds between sweeps (0: none).")
    ] = 10.0,
    no_database: Annotated[
        bool, typer.Option("--no-database", help="Do not start or configure PostgreSQL.")
    ] = False,
) -> None:
    """Start Cloud Tasks, Cloud Run workers, GCS and PostgreSQL stand-ins on loopback."""
    from servo.testing.emulator import EmulatorOptions, GcpEmulator

    target = Path(resolve_target(defs)).resolve()
    options = EmulatorOptions(
        defs=target,
        workers=workers,
        directory=directory.resolve() if directory is not None else None,
        database=not no_database,
        sweep_interval_s=sweep_interval,
    )
    emulator = GcpEmulator(options)
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        config = emulator.start()
        host, port = emulator.balancer.address
        sys.stderr.write(
            f"servo emulate gcp: {workers} worker(s) behind http://{host}:{port}, "
            f"reconciler at {emulator.reconciler_url}, logs in {emulator.directory}\n"
            "in another shell:\n"
            f"  export SERVO_CONFIG={config}\n"
            f"  servo materialize --defs {target}\n"
            "Ctrl-C stops everything.\n"
        )
        sys.stdout.write(f"SERVO_CONFIG={config}\n")
        sys.stdout.flush()
        stop.wait()
    finally:
        emulator.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
