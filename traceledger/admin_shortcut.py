"""The admin's "view on site" route, ``/admin/r/<content type>/<id>/``, without its 500.

Django's ``contenttypes.views.shortcut`` turns an id the primary key cannot hold into a 404
only when the look-up raises ``ValueError``; a UUID key (audit events) raises
``ValidationError`` instead, so ``/admin/r/<events' type>/4/`` answered 500.
"""

from django.contrib.contenttypes.views import shortcut
from django.core.exceptions import ValidationError
from django.http import Http404


def view_on_site(request, content_type_id: int, object_id: str):
    try:
        return shortcut(request, content_type_id, object_id)
    except ValidationError:
        raise Http404(f"No object with id {object_id!r}: not a valid id.") from None
