from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "postroom.delivery"
    label = "delivery"

    def ready(self) -> None:
        from postroom.delivery import signals, timeline  # noqa: F401  (register hooks)
