from django.urls import path

from postroom.campaigns import views

project_urlpatterns = [
    path("campaigns/", views.campaigns, name="campaigns"),
    path("campaigns/new/", views.campaign_edit, name="campaign_new"),
    path("campaigns/preview/", views.campaign_draft_preview, name="campaign_draft_preview"),
    path("campaigns/<uuid:code>/", views.campaign_detail, name="campaign"),
    path("campaigns/<uuid:code>/edit/", views.campaign_edit, name="campaign_edit"),
    path("campaigns/<uuid:code>/send/", views.campaign_send, name="campaign_send"),
    path("campaigns/<uuid:code>/schedule/", views.campaign_schedule, name="campaign_schedule"),
    path(
        "campaigns/<uuid:code>/unschedule/", views.campaign_unschedule, name="campaign_unschedule"
    ),
    path("campaigns/<uuid:code>/pause/", views.campaign_pause, name="campaign_pause"),
    path("campaigns/<uuid:code>/resume/", views.campaign_resume, name="campaign_resume"),
    path("campaigns/<uuid:code>/cancel/", views.campaign_cancel, name="campaign_cancel"),
    path("campaigns/<uuid:code>/retry/", views.campaign_retry, name="campaign_retry"),
    path("campaigns/<uuid:code>/duplicate/", views.campaign_duplicate, name="campaign_duplicate"),
    path(
        "campaigns/<uuid:code>/recipients/", views.campaign_recipients, name="campaign_recipients"
    ),
    path("campaigns/<uuid:code>/report/", views.campaign_report, name="campaign_report"),
    path("campaigns/<uuid:code>/preview/", views.campaign_preview, name="campaign_preview"),
    path("campaigns/<uuid:code>/send-test/", views.campaign_send_test, name="campaign_send_test"),
    path("campaigns/<uuid:code>/recipients.csv", views.campaign_export, name="campaign_export"),
]
