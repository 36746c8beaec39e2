from django.db import migrations


def codes_from_names(apps, schema_editor):
    """An accompanying person's nationality typed as a name ("Algeria", "Algérie") or an alpha-3
    code becomes its ISO alpha-2 code; a value that names no country is left as it is. Two
    letters are never re-read as a name."""
    from protonpath.referrals.countries import code_for, is_country_code

    AccompanyingPerson = apps.get_model("international", "AccompanyingPerson")
    for person in AccompanyingPerson.objects.only("pk", "nationality").iterator():
        value = person.nationality or ""
        if value and not is_country_code(value):
            code = code_for(value)
            if code:
                person.nationality = code
                person.save(update_fields=["nationality"])


class Migration(migrations.Migration):
    dependencies = [
        ("international", "0001_initial"),
        ("referrals", "0003_country_codes"),
    ]

    operations = [migrations.RunPython(codes_from_names, migrations.RunPython.noop)]
