from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InternationalConfig(AppConfig):
    name = "protonpath.international"
    label = "international"
    verbose_name = _("Patients from abroad")

    def ready(self) -> None:
        from protonpath.international import services
        from protonpath.referrals import services as referral_services

        # Once, even if ready() runs twice (tests, autoreload).
        if services.path_guard not in referral_services.TRANSITION_GUARDS:
            referral_services.TRANSITION_GUARDS.append(services.path_guard)

        from django.apps import apps
        from django.db.models.signals import post_delete, post_save

        from protonpath.international import signals

        if apps.is_installed("protonpath.scheduling"):
            for model in ("GantrySession", "Consultation"):
                sender = apps.get_model("scheduling", model)
                post_save.connect(signals.dates_changed, sender=sender, dispatch_uid=f"international-letters-{model}-save")
                post_delete.connect(signals.dates_changed, sender=sender, dispatch_uid=f"international-letters-{model}-delete")
