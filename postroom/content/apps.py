from django.apps import AppConfig


class ContentConfig(AppConfig):
    name = "postroom.content"
    label = "content"
