"""Access rule of the staff pages: anonymous users log in first, signed-in non-staff get 403."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


def staff_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Django's ``staff_member_required`` sends non-staff to the login form too; an operator
    who is signed in with the wrong account needs a plain "forbidden" instead."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_staff):
            raise PermissionDenied("staff only")
        return view(request, *args, **kwargs)

    return wrapper
