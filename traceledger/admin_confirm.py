"""The "Are you sure?" step of irreversible admin actions (accounts' key revocation, audit's
dead-letter replay and discard): one decorator and one template for every app."""

import functools

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse

ACTION_CONFIRMATION_TEMPLATE = "admin/action_confirmation.html"
# The confirmation page names at most this many of the selected objects, then "and N more".
CONFIRMATION_LISTED = 100


def confirm_first(*, description: str, question: str, button: str, permissions=None, warning=None):
    """``@admin.action`` for an irreversible action: the first POST (the changelist's "Go")
    answers an "Are you sure?" page, as Django's own ``delete_selected`` does; the action runs
    only when that page posts back with ``post=yes``.

    The page lists the selection and posts back the action, the selected ids and
    ``select_across`` to the same URL, so "select all N" still means the same filtered set;
    "No, take me back" returns to the list with its filters. ``warning(queryset)`` may
    return a sentence shown above the button (e.g. what the action will skip).

    A selection of which the user can see nothing gets a message and the list again, not a
    page asking to confirm an action on "0" objects.
    """

    def decorate(func):
        @functools.wraps(func)
        def action(modeladmin, request, queryset):
            if not queryset.exists():  # also for a hand-made post=yes: not "none of the 0"
                modeladmin.message_user(
                    request,
                    # Not "(any more)": nothing these actions touch is ever deleted, and
                    # another tenant's id must not read as one that existed.
                    f"None of the selected {modeladmin.model._meta.verbose_name_plural} is "
                    "among those you can see: nothing to do.",
                    messages.WARNING,
                )
                return None
            if request.POST.get("post") == "yes":
                return func(modeladmin, request, queryset)
            return action_confirmation(
                modeladmin,
                request,
                queryset,
                action=func.__name__,
                description=description,
                question=question,
                button=button,
                warning=warning(queryset) if warning else "",
            )

        return admin.action(description=description, permissions=permissions)(action)

    return decorate


def action_confirmation(
    modeladmin,
    request,
    queryset,
    *,
    action: str,
    description: str,
    question: str,
    button: str,
    warning: str = "",
) -> TemplateResponse:
    opts = modeladmin.model._meta
    shown = list(queryset[: CONFIRMATION_LISTED + 1])
    total = len(shown) if len(shown) <= CONFIRMATION_LISTED else queryset.count()
    shown = shown[:CONFIRMATION_LISTED]
    objects = []
    for obj in shown:
        try:
            url = reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change",
                args=[quote(obj.pk)],
                current_app=modeladmin.admin_site.name,
            )
        except NoReverseMatch:
            url = ""
        objects.append({"label": str(obj), "url": url})
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Are you sure?",
        "subtitle": None,
        "description": description,
        "question": question,
        "warning": warning,
        "button": button,
        "action": action,
        "objects": objects,
        "total": total,
        "more": total - len(objects),
        "objects_name": opts.verbose_name if total == 1 else opts.verbose_name_plural,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "cancel_url": request.get_full_path(),
        "opts": opts,
        "media": modeladmin.media,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, ACTION_CONFIRMATION_TEMPLATE, context)
