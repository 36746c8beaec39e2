import importlib.util

from django.conf import settings
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic.base import RedirectView

from protonpath.accounts import views as account_views
from protonpath.api import api

urlpatterns = [
    path("", account_views.home, name="home"),
    # Browsers ask for /favicon.ico whatever the page says.
    path("favicon.ico", RedirectView.as_view(url=static("protonpath/favicon.svg"), permanent=True), name="favicon"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("accounts/", include("protonpath.accounts.urls")),
    path("requests/", include("protonpath.referrals.urls")),
    path("department/", include("protonpath.department.urls")),
    path("api/", api.urls),
    path("admin/", admin.site.urls),
]
for optional_app in ("imaging", "international", "scheduling", "treatment"):
    installed = f"protonpath.{optional_app}" in settings.INSTALLED_APPS
    if installed and importlib.util.find_spec(f"protonpath.{optional_app}.urls") is not None:
        urlpatterns.append(path(f"{optional_app}/", include(f"protonpath.{optional_app}.urls")))
