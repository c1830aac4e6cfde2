"""JSON API: queue entries and read the backlog's figures."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from backlog.models import DEFAULT_SOURCE
from backlog.services import EntrySpec, enqueue_all, stats, validate_entry
from opsconsole.api import BadRequest, api_view, parse_json_body
from opsconsole.idempotency import idempotent
from opsconsole.models import ApiScope

MAX_ENTRIES_PER_REQUEST = 10_000


def _specs(body: object) -> list[EntrySpec]:
    """Validates every entry before anything is written."""
    many = isinstance(body, list)
    items = body if many else [body]
    if not items:
        raise BadRequest(
            "no entries given", {"body": "send an object or a non-empty list of objects"}
        )
    if len(items) > MAX_ENTRIES_PER_REQUEST:
        raise BadRequest(
            "too many entries",
            {"body": f"at most {MAX_ENTRIES_PER_REQUEST} entries per request, got {len(items)}"},
            status=413,
        )
    specs: list[EntrySpec] = []
    details: dict[str, str] = {}
    for index, item in enumerate(items):
        prefix = f"[{index}]." if many else ""
        if not isinstance(item, dict):
            details[prefix.rstrip(".") or "body"] = "must be a JSON object with at least a key"
            continue
        unknown = set(item) - {"source", "key", "reason", "payload"}
        for name in sorted(unknown):
            details[f"{prefix}{name}"] = "unknown field; allowed: source, key, reason, payload"
        try:
            specs.append(
                validate_entry(
                    item.get("source", DEFAULT_SOURCE),
                    item.get("key"),
                    item.get("reason", ""),
                    item.get("payload"),
                )
            )
        except BadRequest as exc:
            details.update({f"{prefix}{name}": message for name, message in exc.details.items()})
    if details:
        raise BadRequest("invalid backlog entries", details)
    return specs


@api_view(scope=ApiScope.WRITE, methods=("POST",))
@idempotent("backlog.add")
def add_entries(request: HttpRequest) -> JsonResponse:
    specs = _specs(parse_json_body(request))
    created = enqueue_all(specs)
    added = sum(1 for entry in created if entry.was_created)
    return JsonResponse(
        {
            "added": added,
            "already_pending": len(created) - added,
            "entries": [
                {
                    "id": e.pk,
                    "source": e.source,
                    "key": e.key,
                    "status": e.status,
                    "created": e.was_created,
                }
                for e in created
            ],
        },
        status=201 if added else 200,
    )


@api_view()
def backlog_stats(request: HttpRequest) -> JsonResponse:
    return JsonResponse(stats())
