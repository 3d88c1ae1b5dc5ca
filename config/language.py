"""The user's language: chosen in the admin header, remembered in their preferences, used for e-mail too."""

from django.conf import settings
from django.utils import timezone, translation
from django.views.i18n import set_language as django_set_language

from notifications.models import NotificationPreference


def set_language(request):
    """Django's set_language, which also keeps the choice in the user's preferences."""
    response = django_set_language(request)
    language = request.POST.get("language")
    if request.method == "POST" and request.user.is_authenticated and language in dict(settings.LANGUAGES):
        NotificationPreference.objects.update_or_create(user=request.user, defaults={"language": language})
    return response


class UserLanguageMiddleware:
    """Use the language the user chose before (kept in their preferences) when the browser has no choice yet,
    and show times in the time zone of the user's site (when all their sites share one)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.conf import settings

        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
            language = NotificationPreference.objects.filter(user=user).values_list("language", flat=True).first()
            if language:
                translation.activate(language)
                request.LANGUAGE_CODE = language
        if user is not None and user.is_authenticated:
            from registry.models import Site

            zones = set(Site.objects.for_user(user).values_list("time_zone", flat=True)[:2])
            if len(zones) == 1:  # dates and times in the admin are shown in the user's site's zone
                timezone.activate(zones.pop())
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
