"""Template tags of the monitoring pages."""

from __future__ import annotations

from typing import Any

from django import template

from monitoring.observability.readings import overall_state as read_overall_state

register = template.Library()


@register.inclusion_tag("pages/_overall_state.html", takes_context=True)
def overall_state(context: template.Context) -> dict[str, Any]:
    """The state badge shown in the header of every staff page."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and user.is_staff):
        return {"state": None}
    state = context.get("overall")
    if state is None:
        state = read_overall_state()
    return {"state": state}
