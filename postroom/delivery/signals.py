from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from postroom.accounts.models import Project


@receiver(post_save, sender=Project, dispatch_uid="delivery_default_sender")
def give_new_projects_a_mailbox(sender, instance: Project, created: bool, **kwargs) -> None:
    # Delivery depends on accounts, not the other way round: so the default sender of a new
    # project is made here, when accounts saves it.
    if created:
        from postroom.delivery.actions import create_default_sender

        create_default_sender(instance)
