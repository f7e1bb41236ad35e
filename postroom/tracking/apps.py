from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "postroom.tracking"
    label = "tracking"

    def ready(self) -> None:
        from postroom.tracking import timeline  # noqa: F401  (registers the events source)
