from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "postroom.webhooks"
    label = "webhooks"
