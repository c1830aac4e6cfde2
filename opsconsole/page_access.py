"""Access rule of the staff pages: anonymous users log in first, signed-in non-staff get 403,
and a page action that changes something needs the Django permission for it (403 without)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

View = Callable[..., HttpResponse]

# The permission of each kind of page action, in the admin's terms: whoever may change the row
# in the admin may act on it from the pages, and nobody else. Templates check the same names
# through ``perms`` to show a page read-only.
ALERT_CHANGE = "monitoring.change_alert"
CHECK_CHANGE = "monitoring.change_check"
BATCH_CHANGE = "batches.change_batchoperation"
BACKLOG_CHANGE = "backlog.change_backlogentry"


def _guard(view: View, permission: str | None) -> View:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_staff):
            raise PermissionDenied("staff only")
        if permission is not None and not user.has_perm(permission):
            raise PermissionDenied(f"this action needs the permission {permission}")
        return view(request, *args, **kwargs)

    return wrapper


def staff_page(view: View) -> View:
    """Django's ``staff_member_required`` sends non-staff to the login form too; an operator
    who is signed in with the wrong account needs a plain "forbidden" instead."""
    return _guard(view, None)


def staff_action(permission: str) -> Callable[[View], View]:
    """``staff_page`` for a view that changes something: the user also needs ``permission``
    (superusers have every permission)."""

    def decorator(view: View) -> View:
        return _guard(view, permission)

    return decorator
