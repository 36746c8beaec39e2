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
