from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "postroom.automations"
    label = "automations"
