from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from protonpath.accounts.models import Role


def role(request):
    user = getattr(request, "user", None)
    current = getattr(user, "role", None) if user is not None and user.is_authenticated else None
    return {"current_role": current, "Role": Role}


#: The staff menu: (url name, label, roles that see it). Entries of apps not installed are left out.
STAFF_MENU = [
    ("referrals:queues", _("Work queues"), {Role.ADMIN_STAFF, Role.ONCOLOGIST, Role.PHYSICIST, Role.HEAD}),
    ("referrals:list", _("All requests"), {Role.ADMIN_STAFF, Role.ONCOLOGIST, Role.PHYSICIST, Role.HEAD, Role.THERAPIST}),
    ("department:meetings", _("Review meetings"), {Role.ADMIN_STAFF, Role.ONCOLOGIST, Role.HEAD}),
    ("scheduling:agenda_today", _("Gantry agenda"),
     {Role.ADMIN_STAFF, Role.ONCOLOGIST, Role.PHYSICIST, Role.HEAD, Role.THERAPIST}),
    ("imaging:inbox", _("DICOM inbox"), {Role.ADMIN_STAFF, Role.ONCOLOGIST, Role.PHYSICIST, Role.HEAD}),
    ("referrals:duplicates", _("Possible duplicate patients"), {Role.ADMIN_STAFF, Role.HEAD}),
    ("international:tariffs", _("Tariffs"), {Role.ADMIN_STAFF, Role.HEAD}),
    ("department:activity", _("Activity"), {Role.ADMIN_STAFF, Role.HEAD}),
    ("department:manage", _("Team and hours"), {Role.ADMIN_STAFF, Role.HEAD}),
]


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_department_staff:
        return {"staff_menu": []}
    items = []
    for name, label, roles in STAFF_MENU:
        if user.role not in roles:
            continue
        try:
            items.append({"url": reverse(name), "label": label, "active": False})
        except NoReverseMatch:
            continue  # that app is not installed here
    # The current entry is the one whose address is the longest start of the page's path.
    matching = [item for item in items if request.path.startswith(item["url"])]
    if matching:
        max(matching, key=lambda item: len(item["url"]))["active"] = True
    return {"staff_menu": items}
