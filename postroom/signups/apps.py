from django.apps import AppConfig


class SignupsConfig(AppConfig):
    name = "postroom.signups"
    label = "signups"
