"""A page number beyond the end of an admin list.

Django answers it (``?p=999`` from a stale or shared link) like any bad lookup, with a
redirect to ``?e=1``, which drops every filter without a word: a compliance user would read
the whole trail as the filtered one. Here the list stays filtered and goes to its last
page, saying so.
"""

from functools import cache

from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR
from django.http import HttpResponseRedirect


class PageOutOfRange(Exception):
    """Not an ``IncorrectLookupParameters``: Django's changelist_view would catch that and
    answer ``?e=1`` before ``PageRangeMixin`` sees it."""

    def __init__(self, page: int, last_page: int):
        super().__init__(f"page {page} is beyond the last page ({last_page})")
        self.page, self.last_page = page, last_page


class PageCheckedChangeListMixin:
    def get_results(self, request):
        try:
            super().get_results(request)
        except IncorrectLookupParameters as exc:
            # get_results raises it for one reason only: paginator.page(p) is InvalidPage.
            paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
            raise PageOutOfRange(self.page_num, paginator.num_pages) from exc
        # Pages come from PostgreSQL's estimate of the count (EstimatedCountPaginator), which
        # may be above the real one: an empty page said nothing at all. (``not result_list``
        # is the page's one query; the template then shows its cached rows.)
        estimated = getattr(self.paginator, "estimated", False)
        if estimated and self.page_num > 1 and not self.result_list:
            messages.warning(
                request,
                f"Page {self.page_num} holds no rows: the list ends before it (its count is "
                "PostgreSQL's estimate). To reach the oldest rows, sort by time the other way "
                "or narrow the list.",
            )


@cache
def _page_checked(changelist_class: type) -> type:
    if issubclass(changelist_class, PageCheckedChangeListMixin):
        return changelist_class
    return type(
        f"PageChecked{changelist_class.__name__}",
        (PageCheckedChangeListMixin, changelist_class),
        {},
    )


class PageRangeMixin:
    """For a ModelAdmin; a ``get_changelist`` of its own must return a changelist class with
    ``PageCheckedChangeListMixin``."""

    def get_changelist(self, request, **kwargs):
        return _page_checked(super().get_changelist(request, **kwargs))

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except PageOutOfRange as exc:
            query = request.GET.copy()
            if exc.page < 1:
                # Not the last page: on a long list that is the oldest, approximate one.
                text = f"There is no page {exc.page}: pages start at 1. Showing the first page"
                query.pop(PAGE_VAR, None)
            else:
                text = (
                    f"There is no page {exc.page} of this list with these filters: it has "
                    f"{exc.last_page}. Showing the last page"
                )
                query[PAGE_VAR] = str(exc.last_page)
            self.message_user(request, f"{text}, filters kept.", messages.WARNING)
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
