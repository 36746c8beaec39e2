"""The demo images: real pydicom files indexed into the demo requests, idempotently."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from protonpath.imaging.models import CheckReport, Instance, Study
from protonpath.referrals.models import TreatmentRequest
from tests.imaging.dicomdata import rt_example_dir

pytestmark = pytest.mark.django_db


def test_seed_demo_indexes_images_into_the_demo_requests_once():
    rt_example_dir()  # the setup script's data, which the third request's images come from
    call_command("seed_demo", stdout=io.StringIO())
    first, second, third = TreatmentRequest.objects.order_by("created_at", "id")[:3]
    counts = Instance.objects.count()

    call_command("seed_demo", stdout=io.StringIO())

    assert Instance.objects.count() == counts
    assert Study.objects.get(treatment_request=first).modality_list == ["CT", "MR"]
    assert CheckReport.objects.get(treatment_request=first).fit_for_planning
    report = CheckReport.objects.get(treatment_request=second)
    assert not report.fit_for_planning
    assert {"too_few_slices", "name_mismatch"} <= {f["code"] for f in report.blocking}
    # The dicompyler-core study (fetched by the setup script) gives the third request contours.
    assert set(Study.objects.filter(treatment_request=third).values_list("modalities", flat=True)) == {"CT\\RTSTRUCT\\RTPLAN\\RTDOSE"}
    assert not Study.objects.filter(treatment_request__isnull=True).exists()
