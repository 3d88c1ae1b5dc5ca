"""Site scoping: every queryset a person or partner sees starts from the sites they belong to.

Each scoped model names the lookup from itself to its Site in `SITE_LOOKUP` and uses
`SiteScopedQuerySet`; `for_user(user)` keeps the rows of the user's sites (superusers see all), and
`for_sites(ids)` keeps those of given sites (the API narrows to its key's site this way).
"""

from __future__ import annotations

from django.db import models


def user_site_ids(user, *, write: bool = False) -> models.QuerySet:
    """A subquery of the ids of the sites `user` belongs to (with a writing role when `write`)."""
    from registry.constants import WRITE_ROLES
    from registry.models import Membership

    memberships = Membership.objects.filter(user_id=user.pk, user__is_active=True)
    if write:
        memberships = memberships.filter(role__in=WRITE_ROLES)
    return memberships.values("site_id")


class SiteScopedQuerySet(models.QuerySet):
    def for_sites(self, site_ids) -> SiteScopedQuerySet:
        return self.filter(**{f"{self.model.SITE_LOOKUP}__in": site_ids})

    def for_user(self, user, *, write: bool = False) -> SiteScopedQuerySet:
        if not user or not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.for_sites(user_site_ids(user, write=write))


def user_can_write_site(user, site_id) -> bool:
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user_site_ids(user, write=True).filter(site_id=site_id).exists()
