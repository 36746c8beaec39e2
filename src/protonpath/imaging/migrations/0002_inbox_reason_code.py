# Why a study waits in the inbox: a code and params beside the English text, so that pages say
# it in the reader's language. Studies already in the inbox get the code their English text
# names (the four texts ingest.route wrote); any other text stays as it is, shown unchanged.

import re

from django.db import migrations, models

_OLD_REASONS = [
    (re.compile(r"^no accession number$"), "no_accession_number"),
    (re.compile(r"^unknown accession number$"), "unknown_accession_number"),
    (re.compile(r"^request (?P<reference>\S+) is closed$"), "request_closed"),
    (re.compile(r"^patient identity differs from request (?P<reference>\S+)$"), "identity_differs"),
]


def code_old_reasons(apps, schema_editor):
    Study = apps.get_model("imaging", "Study")
    rows = Study.objects.filter(treatment_request__isnull=True, inbox_reason_code="").exclude(inbox_reason="")
    for study in rows.iterator():
        for pattern, code in _OLD_REASONS:
            found = pattern.match(study.inbox_reason)
            if found:
                study.inbox_reason_code = code
                study.inbox_reason_params = found.groupdict()
                study.save(update_fields=["inbox_reason_code", "inbox_reason_params"])
                break


class Migration(migrations.Migration):

    dependencies = [
        ("imaging", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="study",
            name="inbox_reason_code",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddField(
            model_name="study",
            name="inbox_reason_params",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(code_old_reasons, migrations.RunPython.noop),
    ]
