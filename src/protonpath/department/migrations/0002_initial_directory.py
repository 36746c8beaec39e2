"""Load the department's services, opening hours and team from data/directory.json (seed 000)."""

from django.db import migrations


def load(apps, schema_editor):
    from protonpath.department.directory import install_directory

    install_directory(
        service_model=apps.get_model("department", "Service"),
        hours_model=apps.get_model("department", "OpeningHours"),
        member_model=apps.get_model("department", "TeamMember"),
    )


class Migration(migrations.Migration):
    dependencies = [("department", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
