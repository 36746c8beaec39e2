"""De-identification for the export of a study (DICOM PS3.15 Annex E, basic profile).

A thin adapter, Django-free, written while the core's ``deidentify.py`` is not there: the web side
calls :func:`deidentify` only, so it can delegate to the core module when it lands.

What it does to every dataset (and recursively to every sequence item):

- removes the attributes the basic profile marks X (addresses, institution, operators, other
  IDs, descriptions, comments...) and every private attribute;
- empties those marked Z (patient's birth date and sex, accession number, study ID, dates and
  times, referring physician) and replaces the patient's name and ID by a pseudonym (D);
- replaces every UID that is not a registered DICOM UID (SOP classes, transfer syntaxes stay) by
  a new one derived from it and a secret ``salt``, so that references between files (the
  RTSTRUCT's contour images and frame of reference, the RTPLAN's structure set, the RTDOSE's
  plan) still point at the right, remapped instances;
- records Patient Identity Removed = YES and the method (code 113100, basic profile).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

#: Basic profile 'X' (remove), the attributes found in CT/MR/PET and RT objects.
REMOVE = frozenset({
    "AdditionalPatientHistory", "AdmissionID", "AdmittingDiagnosesDescription", "Allergies",
    "AuthorObserverSequence", "BranchOfService", "ConsultingPhysicianName", "ContentCreatorName",
    "ContributionDescription", "CountryOfResidence", "CurrentPatientLocation", "CustodialOrganizationSequence",
    "DataSetTrailingPadding", "DerivationDescription", "DeviceSerialNumber", "EthnicGroup",
    "FrameComments", "ImageComments", "InstitutionAddress", "InstitutionalDepartmentName",
    "InstitutionName", "IssuerOfPatientID", "MedicalRecordLocator", "MilitaryRank", "NameOfPhysiciansReadingStudy",
    "Occupation", "OperatorsName", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames",
    "PatientAddress", "PatientAge", "PatientBirthName", "PatientBirthTime", "PatientComments",
    "PatientInsurancePlanCodeSequence", "PatientMotherBirthName", "PatientReligiousPreference",
    "PatientSize", "PatientState", "PatientTelephoneNumbers", "PatientWeight", "PerformedProcedureStepDescription",
    "PerformedProcedureStepID", "PerformingPhysicianName", "PhysiciansOfRecord", "PregnancyStatus",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "RequestAttributesSequence",
    "RequestingPhysician", "RequestingService", "ReviewerName", "SeriesDescription", "SmokingStatus",
    "StationName", "StudyDescription", "StudyComments", "ReasonForStudy", "RequestedProcedureDescription",
    "ScheduledProcedureStepDescription", "OperatorIdentificationSequence", "AcquisitionComments",
    "InstitutionCodeSequence", "ReferencedPatientSequence", "SourceApplicationEntityTitle",
})
#: Basic profile 'Z' (zero length).
EMPTY = frozenset({
    "AccessionNumber", "PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID",
    "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
    "ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime", "StructureSetDate",
    "StructureSetTime", "RTPlanDate", "RTPlanTime", "AcquisitionDateTime", "ReviewDate", "ReviewTime",
})
METHOD = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"


def remapped_uid(uid: str, salt: str) -> str:
    """A new UID for ``uid``: the same for the same ``salt``, unlinkable without it."""
    digest = hmac.new(salt.encode(), uid.encode(), hashlib.sha256).hexdigest()
    # A 2.25 UID (PS3.5 B.2) from 128 bits of the keyed digest.
    return f"2.25.{int(digest[:32], 16)}"


def _is_registered(uid: str) -> bool:
    """SOP classes, transfer syntaxes, coding schemes: DICOM's own UIDs are not identifying."""
    return UID(uid).name != uid


def _map_uid_value(value, salt: str):
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [_map_uid_value(v, salt) for v in value]
    text = str(value)
    if not text or _is_registered(text):
        return value
    return remapped_uid(text, salt)


def _clean(ds: Dataset, salt: str, pseudonym: str) -> None:
    for element in list(ds):
        keyword = element.keyword
        if element.tag.is_private or keyword in REMOVE:
            del ds[element.tag]
        elif keyword in EMPTY:
            element.value = None
        elif keyword in ("PatientName", "PatientID"):
            element.value = pseudonym
        elif element.VR == "UI" and element.value:
            element.value = _map_uid_value(element.value, salt)
        elif element.VR == "SQ":
            for item in element.value or []:
                _clean(item, salt, pseudonym)


def deidentify(datasets: Iterable[Dataset], *, salt: str, pseudonym: str = "ANONYMOUS") -> list[Dataset]:
    """De-identify the datasets of one export together (in place), with consistent UIDs.

    Parameters
    ----------
    datasets : iterable of pydicom.Dataset
        Every file of the export (images and RT objects), with their file meta.
    salt : str
        A secret; the same salt maps a UID to the same new UID, in every file.
    pseudonym : str
        Put in PatientName and PatientID.

    Returns
    -------
    list of pydicom.Dataset
    """
    done = []
    for ds in datasets:
        _clean(ds, salt, pseudonym)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113100", "DCM", "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            if meta.get("MediaStorageSOPInstanceUID"):
                meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            if "SourceApplicationEntityTitle" in meta:
                del meta.SourceApplicationEntityTitle
        done.append(ds)
    return done
