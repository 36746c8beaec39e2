from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SchedulingConfig(AppConfig):
    name = "protonpath.scheduling"
    label = "scheduling"
    verbose_name = _("Scheduling")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from protonpath.referrals import services as referral_services
        from protonpath.scheduling import facts, services

        # International requests reach the first consultation and the gantry only once paid.
        if services.require_paid_guard not in referral_services.TRANSITION_GUARDS:
            referral_services.TRANSITION_GUARDS.append(services.require_paid_guard)
        # Each step checks the facts it records (the consultation held, the first session given).
        if facts.missing_fact not in referral_services.FACT_CHECKS:
            referral_services.FACT_CHECKS.append(facts.missing_fact)
