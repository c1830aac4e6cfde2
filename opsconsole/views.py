from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Dependencies are reported by /api/status."""
    return JsonResponse({"status": "ok"})


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Pages link the SVG icon; a client that asks for /favicon.ico anyway gets it too, so
    that no request of a page ends in a 404 in the log."""
    return redirect(static("opsconsole/favicon.svg"), permanent=True)
