"""The batches JSON API (DESIGN §6). Views parse and answer; the work is in services and models."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from batches import metrics, services
from opsconsole.api import BadRequest, api_view, json_error, parse_json_body
from opsconsole.excerpt import error_excerpt
from opsconsole.idempotency import idempotent
from opsconsole.models import ApiScope
from opsconsole.paging import parse_limit

logger = logging.getLogger(__name__)


def when_enabled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """``BATCHES_API_ENABLED=false`` answers 503 before anything is read or written."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.BATCHES_API_ENABLED:
            response = json_error(
                503,
                "the batches API is turned off on this server (BATCHES_API_ENABLED=false); "
                "existing batches are kept and keep running",
            )
            response["Retry-After"] = "300"
            return response
        return view(request, *args, **kwargs)

    return wrapper


@api_view(scope=ApiScope.WRITE, methods=("POST",))
@idempotent("batches.create")
def _create(request: HttpRequest) -> JsonResponse:
    batch = services.create_batch(parse_json_body(request))
    return JsonResponse(
        {"batchId": str(batch.id), "status": batch.status, "totalItems": batch.total_items},
        status=201,
    )


@api_view(scope=ApiScope.WRITE, methods=("POST",))
@idempotent("batches.create")
def _create_for_operation(request: HttpRequest, name: str) -> JsonResponse:
    operation = services.registered_operation(name)
    batch = services.create_batch(
        services.validate_for_operation(operation, parse_json_body(request))
    )
    return JsonResponse(
        {
            "message": f"Batch {operation.name} operation initiated",
            "batchId": str(batch.id),
            "status": batch.status,
            "totalItems": batch.total_items,
        },
        status=201,
    )


def _page(request: HttpRequest, creator: str | None) -> JsonResponse:
    page = services.list_batches(
        creator=creator,
        status=request.GET.get("status") or None,
        limit=parse_limit(request.GET.get("limit")),
        cursor=request.GET.get("cursor") or None,
    )
    return JsonResponse(
        {
            "batches": [services.batch_summary(b) for b in page.batches],
            "next_cursor": page.next_cursor,
        }
    )


@api_view(scope=ApiScope.READ, methods=("GET",))
def _list(request: HttpRequest) -> JsonResponse:
    return _page(request, request.GET.get("creator") or None)


@when_enabled
def collection(request: HttpRequest) -> HttpResponse:
    """GET: list (``creator``, ``status``, ``limit`` 1-200, ``cursor``); POST: create."""
    if request.method == "POST":
        return _create(request)
    if request.method == "GET":
        return _list(request)
    response = json_error(405, f"method {request.method} not allowed; use GET, POST")
    response["Allow"] = "GET, POST"
    return response


@when_enabled
@api_view(scope=ApiScope.READ, methods=("GET",))
def by_creator(request: HttpRequest, creator: str) -> JsonResponse:
    return _page(request, creator)


@when_enabled
def batch_or_operation(request: HttpRequest, name: str) -> HttpResponse:
    """``/api/batches/<x>/``: GET reads the batch with id x, POST creates a batch of the
    operation named x (the operations document's ``POST /api/batches/<operation>``). One route
    for both: a batch id and an operation name share the URL's place."""
    if request.method == "POST":
        return _create_for_operation(request, name)
    if request.method == "GET":
        return _detail(request, name)
    response = json_error(405, f"method {request.method} not allowed; use GET, POST")
    response["Allow"] = "GET, POST"
    return response


@api_view(scope=ApiScope.READ, methods=("GET",))
def _detail(request: HttpRequest, batch_id: str) -> JsonResponse:
    batch = services.get_batch(batch_id)
    limit = parse_limit(request.GET.get("items_limit"), name="items_limit", default=100)
    return JsonResponse(
        services.batch_detail(batch, limit, request.GET.get("items_cursor") or None)
    )


@when_enabled
@api_view(scope=ApiScope.WRITE, methods=("POST",))
def retry(request: HttpRequest, batch_id: str) -> JsonResponse:
    batch = services.get_batch(batch_id)
    count = batch.retry_failed()
    if not count:
        raise BadRequest(
            "nothing to retry: the batch has no failed items or is still running",
            {"status": batch.status},
            status=409,
        )
    return JsonResponse({**services.batch_summary(batch), "retriedItems": count})


@when_enabled
@api_view(scope=ApiScope.WRITE, methods=("POST",))
def cancel(request: HttpRequest, batch_id: str) -> JsonResponse:
    batch = services.get_batch(batch_id)
    if not batch.cancel():
        raise BadRequest("the batch has already finished", {"status": batch.status}, status=409)
    return JsonResponse(services.batch_summary(batch))


@when_enabled
@api_view(scope=ApiScope.READ, methods=("GET",))
def health(request: HttpRequest) -> JsonResponse:
    try:
        return JsonResponse(metrics.health())
    except DatabaseError as exc:
        logger.error("batches health: the database cannot be read: %s", exc)
        return JsonResponse(
            {
                "status": "unhealthy",
                "error": f"the database cannot be read: {error_excerpt(str(exc), 200)}",
            },
            status=500,
        )
