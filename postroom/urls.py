from django.urls import include, path

from postroom.accounts import urls as accounts_urls
from postroom.api import api
from postroom.automations import urls as automations_urls
from postroom.campaigns import urls as campaigns_urls
from postroom.contacts import urls as contacts_urls
from postroom.content import urls as content_urls
from postroom.delivery import urls as delivery_urls
from postroom.imports import urls as imports_urls
from postroom.ops import urls as ops_urls
from postroom.signups import urls as signups_urls
from postroom.tracking import urls as tracking_urls
from postroom.webhooks import urls as webhooks_urls

# Everything under /p/<project>/ is resolved to request.project by accounts.project_view.
project_urlpatterns = [
    *ops_urls.project_urlpatterns,
    *accounts_urls.project_urlpatterns,
    *contacts_urls.project_urlpatterns,
    *imports_urls.project_urlpatterns,
    *delivery_urls.project_urlpatterns,
    *content_urls.project_urlpatterns,
    *campaigns_urls.project_urlpatterns,
    *automations_urls.project_urlpatterns,
    *tracking_urls.project_urlpatterns,
    *signups_urls.project_urlpatterns,
    *webhooks_urls.project_urlpatterns,
]

urlpatterns = [
    path("api/", api.urls),
    path("p/<uuid:project_code>/", include(project_urlpatterns)),
    *ops_urls.urlpatterns,
    *accounts_urls.urlpatterns,
    *tracking_urls.urlpatterns,
    *content_urls.urlpatterns,
    *signups_urls.urlpatterns,
]
