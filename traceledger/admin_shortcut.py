"""The admin's "view on site" route, ``/admin/r/<content type>/<id>/``: always a 404.

No model here has a page outside the admin (none defines ``get_absolute_url``), so the route
has nothing to redirect to. Django's ``contenttypes.views.shortcut`` still looked the object
up, in every tenant and without the model admin's permissions, and said which: "… objects
don't have a get_absolute_url() method" for an object that exists, "… doesn't exist" for one
that does not. With the event ids derived from (tenant, event_id), any staff user could
confirm another tenant's guessed event ids, users, keys and tenants (tenancy QA). It also
answered 500 for an id a UUID key cannot hold.
"""

from django.http import Http404

NO_PAGE = "No page outside the admin for this object."


def view_on_site(request, content_type_id: int, object_id: str):
    raise Http404(NO_PAGE)
