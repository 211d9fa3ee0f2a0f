"""The gRPC face of the local server: ``google.cloud.tasks.v2.CloudTasks``.

A generic handler maps each method to the store, decoding requests and encoding
answers with the proto-plus types' own ``deserialize`` / ``serialize``, so no
generated stubs are needed and the official client cannot tell the difference.
Served: CreateQueue, GetQueue, UpdateQueue, ListQueues, DeleteQueue, PurgeQueue,
PauseQueue, ResumeQueue, CreateTask, GetTask, DeleteTask, ListTasks, RunTask. Any
other method (IAM, CMEK, batch calls) answers UNIMPLEMENTED, which gRPC does for a
method no handler names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.protobuf import empty_pb2

from servo.testing.cloud_tasks._proto import Message, tasks_v2
from servo.testing.cloud_tasks.errors import ApiError
from servo.testing.cloud_tasks.store import TaskStore

SERVICE = "google.cloud.tasks.v2.CloudTasks"


def _empty(_: object) -> bytes:
    data: bytes = empty_pb2.Empty().SerializeToString()
    return data


def _unary(
    call: Callable[[Any], Any],
    request_type: Any,
    response_type: Any,
) -> grpc.RpcMethodHandler:
    serialize = _empty if response_type is None else response_type.serialize

    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return call(request)
        except ApiError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code.value), exc.message)

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=request_type.deserialize, response_serializer=serialize
    )


def handler(store: TaskStore) -> grpc.GenericRpcHandler:
    """The generic handler serving `store` as the CloudTasks service."""
    t = tasks_v2

    def list_queues(r: Message) -> Message:
        queues, token = store.list_queues(r.parent, r.page_size, r.page_token)
        return t.ListQueuesResponse(queues=queues, next_page_token=token)

    def list_tasks(r: Message) -> Message:
        found, token = store.list_tasks(r.parent, r.page_size, r.page_token)
        return t.ListTasksResponse(tasks=found, next_page_token=token)

    methods = {
        "CreateQueue": _unary(
            lambda r: store.create_queue(r.parent, r.queue), t.CreateQueueRequest, t.Queue
        ),
        "GetQueue": _unary(lambda r: store.get_queue(r.name), t.GetQueueRequest, t.Queue),
        "UpdateQueue": _unary(
            lambda r: store.update_queue(r.queue, list(r.update_mask.paths)),
            t.UpdateQueueRequest,
            t.Queue,
        ),
        "ListQueues": _unary(list_queues, t.ListQueuesRequest, t.ListQueuesResponse),
        "DeleteQueue": _unary(lambda r: store.delete_queue(r.name), t.DeleteQueueRequest, None),
        "PurgeQueue": _unary(lambda r: store.purge_queue(r.name), t.PurgeQueueRequest, t.Queue),
        "PauseQueue": _unary(
            lambda r: store.set_state(r.name, running=False), t.PauseQueueRequest, t.Queue
        ),
        "ResumeQueue": _unary(
            lambda r: store.set_state(r.name, running=True), t.ResumeQueueRequest, t.Queue
        ),
        "CreateTask": _unary(
            lambda r: store.create_task(r.parent, r.task), t.CreateTaskRequest, t.Task
        ),
        "GetTask": _unary(lambda r: store.get_task(r.name), t.GetTaskRequest, t.Task),
        "DeleteTask": _unary(lambda r: store.delete_task(r.name), t.DeleteTaskRequest, None),
        "ListTasks": _unary(list_tasks, t.ListTasksRequest, t.ListTasksResponse),
        "RunTask": _unary(lambda r: store.run_task(r.name), t.RunTaskRequest, t.Task),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)
