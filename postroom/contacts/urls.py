from django.urls import path

from postroom.contacts import views

project_urlpatterns = [
    path("contacts/", views.contact_list, name="contacts"),
    path("contacts/count/", views.contact_count, name="contact_count"),
    path("contacts/new/", views.contact_new, name="contact_new"),
    path("contacts/export.csv", views.contacts_export, name="contacts_export"),
    path(
        "contacts/export/selection/",
        views.contacts_export_selection,
        name="contacts_export_selection",
    ),
    path("contacts/bulk/", views.contacts_bulk, name="contacts_bulk"),
    path("contacts/bulk/<uuid:code>/", views.bulk_action, name="bulk_action"),
    path("contacts/fields/", views.fields, name="fields"),
    path("contacts/fields/<slug:key>/delete/", views.field_delete, name="field_delete"),
    path("contacts/<uuid:code>/", views.contact_detail, name="contact"),
    path("contacts/<uuid:code>/delete/", views.contact_delete, name="contact_delete"),
    path("contacts/<uuid:code>/export.json", views.contact_export, name="contact_export"),
    path("suppressions/", views.suppressions, name="suppressions"),
    path(
        "suppressions/<int:suppression_id>/delete/",
        views.suppression_delete,
        name="suppression_delete",
    ),
    path("segments/", views.segments, name="segments"),
    path("segments/new/", views.segment_edit, name="segment_new"),
    path("segments/count/", views.segment_count, name="segment_count"),
    path("segments/<uuid:code>/", views.segment_edit, name="segment"),
    path("segments/<uuid:code>/delete/", views.segment_delete, name="segment_delete"),
    path("segments/<uuid:code>/export.csv", views.segment_export, name="segment_export"),
]
