"""Images in a real browser: a referring doctor uploads a DICOM folder (CD with DICOMDIR), and the
radiotherapy team scroll through a CT with window presets and the RTSTRUCT contours drawn over it.
Screenshots of each step are saved under test-artifacts/screenshots/.
"""

from __future__ import annotations

import pytest

from protonpath.imaging import services
from protonpath.imaging.models import Instance, Series
from protonpath.referrals.models import Patient
from tests.browser.conftest import login, wait_for
from tests.factories import PASSWORD, make_request
from tests.imaging.conftest import as_uploads
from tests.imaging.dicomdata import PYDICOM_FILES, rt_study, write_ct_series  # noqa: F401 (fixture)


@pytest.mark.django_db(transaction=True)

def test_a_doctor_uploads_a_cd_folder_and_a_bad_file_is_refused(page, screenshot, doctor, tmp_path):
    r = make_request(doctor, images=False)
    login(page, doctor.username, PASSWORD)
    page.goto(f"/requests/{r.pk}/")
    page.wait_for_selector("#imaging")
    screenshot("images-panel-empty")

    page.set_input_files("#imaging input[name=folder]", str(PYDICOM_FILES / "dicomdirtests" / "TINY_ALPHA"))
    page.click("#imaging button[type=submit]")
    page.wait_for_selector("#imaging .notice")
    assert "new instance(s)" in page.inner_text("#imaging .notice")
    stored = Instance.objects.filter(series__study__treatment_request=r).count()
    assert stored > 0
    screenshot("cd-folder-received")

    bad = tmp_path / "letter.dcm"
    bad.write_text("not an image")
    good = write_ct_series(tmp_path / "ct", 2)
    page.set_input_files("#imaging input[name=files]", [str(good[0]), str(good[1]), str(bad)])
    page.click("#imaging button[type=submit]")
    page.wait_for_selector("#imaging .upload-errors")
    assert "letter.dcm" in page.inner_text("#imaging .upload-errors")
    assert Instance.objects.filter(series__study__treatment_request=r).count() == stored
    screenshot("bad-file-refused")


@pytest.mark.django_db(transaction=True)
def test_staff_scroll_a_ct_with_window_presets_and_contours(page, screenshot, doctor, oncologist, rt_study):  # noqa: F811
    r = make_request(doctor, images=False)
    Patient.objects.filter(pk=r.patient_id).update(last_name="boost", first_name="breast")
    r.refresh_from_db()
    services.upload_study(actor=oncologist, treatment_request=r, files=as_uploads([p for g in rt_study.values() for p in g]))
    series = Series.objects.get(study__treatment_request=r, modality="CT")

    login(page, oncologist.username, PASSWORD)
    page.goto(f"/requests/{r.pk}/")
    assert "CT" in page.inner_text("#imaging")
    screenshot("checks-panel")
    page.click(f"#imaging tr[data-series='{series.pk}'] a.view")
    viewer = page.locator("#viewer")
    wait_for(page, "document.getElementById('viewer').dataset.loadedUrl !== undefined")
    wait_for(page, "document.getElementById('viewer').dataset.contoursLoaded === '1'")
    assert viewer.get_attribute("data-preset") == "soft tissue"
    start = int(viewer.get_attribute("data-index"))
    assert start == 49  # the middle of 98 slices
    assert int(viewer.get_attribute("data-contours-drawn")) > 0
    screenshot("viewer-soft-tissue-contours")

    page.hover("#slice-canvas")
    page.mouse.wheel(0, 120)
    page.mouse.wheel(0, 120)
    wait_for(page, f"document.getElementById('viewer').dataset.index === '{start + 2}'")
    page.focus("#viewer")
    page.keyboard.press("ArrowUp")
    wait_for(page, f"document.getElementById('viewer').dataset.index === '{start + 1}'")
    assert page.input_value("#slice-slider") == str(start + 1)

    page.click("button[data-preset=lung]")
    wait_for(page, "document.getElementById('viewer').dataset.loadedUrl.includes('center=-600')")
    assert page.input_value("#wl-center") == "-600" and page.input_value("#wl-width") == "1500"
    screenshot("viewer-lung")

    page.click("button[data-preset=bone]")
    wait_for(page, "document.getElementById('viewer').dataset.loadedUrl.includes('width=1800')")
    box = page.locator("#slice-canvas").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + 150, box["y"] + 80)
    page.mouse.up()
    wait_for(page, "document.getElementById('viewer').dataset.preset === 'custom'")
    assert page.input_value("#wl-center") == "440" and page.input_value("#wl-width") == "2000"
    wait_for(page, "document.getElementById('viewer').dataset.loadedUrl.includes('width=2000')")
    page.keyboard.press("End")
    wait_for(page, "document.getElementById('viewer').dataset.index === '97'")
    assert page.inner_text("#slice-label").startswith("98 / 98")
    page.uncheck("#show-contours")
    assert viewer.get_attribute("data-contours-drawn") == "0"
    screenshot("viewer-bone-last-slice")
