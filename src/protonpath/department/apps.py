from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DepartmentConfig(AppConfig):
    name = "protonpath.department"
    label = "department"
    verbose_name = _("Department")

    def ready(self) -> None:
        from protonpath.department.services import sync_agenda_after_transition
        from protonpath.referrals.services import request_transitioned

        request_transitioned.connect(sync_agenda_after_transition, dispatch_uid="department.sync_agenda")
