from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "postroom.imports"
    label = "imports"
