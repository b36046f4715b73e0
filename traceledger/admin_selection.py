"""Admin actions on a hand-made or stale selection.

Django's ``response_action`` filters ``pk__in`` the posted ids as they come: an id that is
not one of the model's keys (``abc`` for an integer or UUID key) reaches the database and
answers 500. Such a selection is refused with a message instead, on every admin that has
actions.
"""

from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect


class ValidSelectionMixin:
    def response_action(self, request, queryset):
        pk_field = self.model._meta.pk
        try:
            for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
                pk_field.to_python(value)
        except ValidationError:
            self.message_user(
                request,
                f"The selection holds an invalid {self.model._meta.verbose_name} id.",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)
