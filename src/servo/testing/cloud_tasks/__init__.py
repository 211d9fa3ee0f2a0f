"""A local Cloud Tasks server that the official ``google-cloud-tasks`` client talks to.

The official client reaches it over gRPC on loopback::

    from servo.testing.cloud_tasks import LocalCloudTasks, ServerOptions

    with LocalCloudTasks(ServerOptions(auto_create_queues=True)) as server:
        client = server.client()  # or CloudTasksGrpcTransport(channel=insecure_channel(...))
        client.create_task(parent=queue, task=...)

What it does as Cloud Tasks does (see the modules for the details):

- names: a named task holds its name while it exists and for an hour after it ran or
  was deleted (`ServerOptions.dedup_window_s`); creating it again is
  ALREADY_EXISTS. An unnamed task gets a server-assigned name. An unknown queue is
  NOT_FOUND (unless `auto_create_queues`).
- pushes (`pusher`): HTTP to the task's URL with the ``X-CloudTasks-*`` headers and,
  when the task asks for one, an RS256 OIDC ID token whose key the server publishes
  as a JWKS (`LocalCloudTasks.jwks_url`); `schedule_time`, the queue's token bucket
  and concurrency limit, the dispatch deadline.
- outcomes (`policy`): 2xx deletes the task; anything else (or no answer in time)
  is retried with the queue's backoff, never sooner than a 429/503's
  ``Retry-After``, until its retry limits are spent.
- faults (`faults`): seeded drops (lost pushes, not retried), duplicates, delays.
- introspection (`stats`): counters, every push, `wait_idle`.

Run it alone with ``python -m servo.testing.cloud_tasks --port P --jwks-port Q``.
The PyPI ``gcloud-tasks-emulator`` ignores duplicate names, OIDC, rate limits and
backoff, which is why Servo has its own.
"""

from __future__ import annotations

from servo.testing.cloud_tasks.errors import ApiError, Code
from servo.testing.cloud_tasks.faults import Faults
from servo.testing.cloud_tasks.oidc import JwksServer, TokenIssuer
from servo.testing.cloud_tasks.options import ServerOptions
from servo.testing.cloud_tasks.policy import RetryPolicy
from servo.testing.cloud_tasks.server import LocalCloudTasks
from servo.testing.cloud_tasks.stats import PushRecord, Stats

__all__ = [
    "ApiError",
    "Code",
    "Faults",
    "JwksServer",
    "LocalCloudTasks",
    "PushRecord",
    "RetryPolicy",
    "ServerOptions",
    "Stats",
    "TokenIssuer",
]
