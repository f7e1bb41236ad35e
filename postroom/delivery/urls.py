from django.urls import path

from postroom.delivery import views

project_urlpatterns = [
    path("senders/", views.senders, name="senders"),
    path("senders/new/", views.sender_edit, name="sender_new"),
    path("senders/<uuid:code>/", views.sender_detail, name="sender"),
    path("senders/<uuid:code>/edit/", views.sender_edit, name="sender_edit"),
    path(
        "senders/<uuid:code>/test-connection/",
        views.sender_test_connection,
        name="sender_test_connection",
    ),
    path("senders/<uuid:code>/send-test/", views.sender_send_test, name="sender_send_test"),
    path(
        "senders/<uuid:code>/make-default/", views.sender_make_default, name="sender_make_default"
    ),
    path("senders/<uuid:code>/resume/", views.sender_resume, name="sender_resume"),
    path("senders/<uuid:code>/delete/", views.sender_delete, name="sender_delete"),
    path("messages/", views.transactional_log, name="transactional_log"),
    path("messages/<uuid:code>/", views.message_detail, name="message"),
    path("messages/<uuid:code>/retry/", views.message_retry, name="message_retry"),
    path("dkim/new/", views.dkim_create, name="dkim_create"),
    path("dkim/<uuid:code>/check/", views.dkim_check, name="dkim_check"),
    path("dkim/<uuid:code>/toggle/", views.dkim_toggle, name="dkim_toggle"),
    path("dkim/<uuid:code>/delete/", views.dkim_delete, name="dkim_delete"),
    path("mailbox/", views.mailbox, name="mailbox"),
    path("mailbox/<uuid:code>/", views.mailbox_message, name="mailbox_message"),
]
