"""Instance digests say their algorithm ("sha256:<hex>", "blake3:<hex>"): the listener now hashes
with BLAKE3 (imaging.digests); the SHA-256 digests of rows indexed before keep their value, tagged."""

from django.db import migrations, models
from django.db.models import Value
from django.db.models.functions import Concat, Substr


def tag_sha256(apps, schema_editor):
    Instance = apps.get_model("imaging", "Instance")
    for field in ("file_digest", "dataset_digest"):
        Instance.objects.exclude(**{field: ""}).exclude(**{f"{field}__contains": ":"}).update(
            **{field: Concat(Value("sha256:"), field)}
        )


def untag_sha256(apps, schema_editor):
    Instance = apps.get_model("imaging", "Instance")
    for field in ("file_digest", "dataset_digest"):
        Instance.objects.filter(**{f"{field}__startswith": "sha256:"}).update(**{field: Substr(field, 8)})
        # BLAKE3 digests have no SHA-256 column to go back to: emptied (their files stay).
        Instance.objects.filter(**{f"{field}__contains": ":"}).update(**{field: ""})


class Migration(migrations.Migration):
    dependencies = [("imaging", "0002_inbox_reason_code")]

    operations = [
        migrations.RenameField("instance", "sha256", "file_digest"),
        migrations.RenameField("instance", "dataset_sha256", "dataset_digest"),
        migrations.AlterField(
            "instance", "file_digest", models.CharField(max_length=71, help_text="of the stored file")
        ),
        migrations.AlterField(
            "instance",
            "dataset_digest",
            models.CharField(
                max_length=71, help_text="of the encoded dataset without file meta: same instance, same digest"
            ),
        ),
        migrations.RunPython(tag_sha256, untag_sha256),
    ]
