"""Images indexed by the imaging app count in the medical file's checklist."""

import pytest

from protonpath.imaging import services
from protonpath.referrals import selectors
from tests.factories import make_request
from tests.imaging.conftest import PATIENT_BIRTH, PATIENT_NAME, as_uploads
from tests.imaging.dicomdata import write_ct_series

pytestmark = pytest.mark.django_db


def test_a_study_uploaded_through_the_imaging_form_ticks_the_images_line(doctor, tmp_path):
    r = make_request(doctor, complete=False, submit=False)
    assert "dicom_images" in {item.key for item in selectors.missing_items(r)}
    paths = write_ct_series(tmp_path / "ct", 3, spacing_mm=2.5, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    services.upload_study(actor=doctor, treatment_request=r, files=as_uploads(paths))
    assert "dicom_images" not in {item.key for item in selectors.missing_items(r)}


