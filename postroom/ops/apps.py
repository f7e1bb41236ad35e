from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "postroom.ops"
    label = "ops"

    def ready(self) -> None:
        from postroom.ops import checks  # noqa: F401  (registers the system checks)
