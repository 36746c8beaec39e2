"""De-identification by the DICOM Basic Application Level Confidentiality Profile (PS3.15 E.1).

The actions per attribute are data: ``data/deid_basic_profile.csv`` copies the "Basic Prof."
column of PS3.15 Table E.1-1 for the attributes handled. On top of the table:

- every private attribute is removed;
- every UID that DICOM itself does not define (``1.2.840.10008.*``) is replaced through a
  :class:`UidMapper`, wherever it occurs (SOP, study, series, frame of reference, and references
  to them in RTSTRUCT, RTPLAN and RTDOSE sequences), so that a de-identified CT, its structure
  set, plan and dose still refer to each other;
- PatientIdentityRemoved, DeidentificationMethod and DeidentificationMethodCodeSequence
  (113100, DCM, "Basic Application Confidentiality Profile") are set.

A :class:`UidMapper` derives each new UID from the old one with a keyed hash (HMAC-SHA256): the
same key gives the same UIDs in every export of a patient, and nobody without the key can tell
the original UIDs. Its ``mapping`` can also be stored and reloaded.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

DICOM_UID_ROOT = "1.2.840.10008."
METHOD_DESCRIPTION = "DICOM PS3.15 E.1 Basic Profile (protonpath)"  # LO: 64 characters at most
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U"})

#: Dummy values for action D, by value representation (PS3.5 Table 6.2-1 limits respected).
DUMMY_BY_VR = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMOUS",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
}


def resolve_action(code: str) -> str:
    """One action from a PS3.15 code that may combine several (``X/Z/D``, ``X/Z/U*``...).

    The table combines codes when the right one depends on the attribute's type in the IOD (D for
    Type 1, Z for Type 2, X for Type 3). Not knowing the IOD here, we pick the option that is
    conformant for every type it allows: U when offered (references must survive), else D (a dummy
    is valid for any type), else Z (a combined code without D never covers a Type 1 attribute).
    """
    options = {part.rstrip("*") for part in code.split("/")}
    unknown = options - ACTIONS
    if unknown:
        raise ValueError(f"unknown de-identification action {code!r}")
    for preferred in ("U", "D", "Z", "X", "C", "K"):
        if preferred in options:
            return preferred
    raise ValueError(f"empty de-identification action {code!r}")


@dataclass(frozen=True)
class ActionTable:
    """Actions by tag, with group wildcards for repeating groups (50xx curves, 60xx overlays).

    Attributes
    ----------
    by_tag : dict
        Tag (int) -> resolved action letter.
    by_masked_tag : tuple of (mask, value, action)
        For rows such as ``60xx3000``: a tag matches when ``tag & mask == value``.
    """

    by_tag: dict[int, str]
    by_masked_tag: tuple[tuple[int, int, str], ...] = ()

    def action_for(self, tag: int) -> str | None:
        """The action for a tag, or None if the profile says nothing of it."""
        action = self.by_tag.get(tag)
        if action is not None:
            return action
        for mask, value, masked_action in self.by_masked_tag:
            if tag & mask == value:
                return masked_action
        return None

    def with_overrides(self, overrides: Mapping[str, str]) -> ActionTable:
        """A copy where some attributes (by keyword) get another action, e.g. ``{"StudyDate": "K"}``
        for the Retain Longitudinal Temporal Information option."""
        by_tag = dict(self.by_tag)
        for keyword, code in overrides.items():
            tag = pydicom.datadict.tag_for_keyword(keyword)
            if tag is None:
                raise ValueError(f"unknown DICOM keyword {keyword!r}")
            by_tag[tag] = resolve_action(code)
        return ActionTable(by_tag, self.by_masked_tag)


def load_basic_profile(path: Path | None = None) -> ActionTable:
    """The action table of the basic profile from ``data/deid_basic_profile.csv``."""
    text = Path(path).read_text() if path else (
        resources.files("protonpath.imaging").joinpath("data/deid_basic_profile.csv").read_text()
    )
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    by_tag: dict[int, str] = {}
    masked: list[tuple[int, int, str]] = []
    for row in rows:
        tag, action = row["tag"].strip(), resolve_action(row["action"].strip())
        if "x" in tag:
            mask = int("".join("0" if c == "x" else "F" for c in tag), 16)
            value = int(tag.replace("x", "0"), 16)
            masked.append((mask, value, action))
        else:
            by_tag[int(tag, 16)] = action
    return ActionTable(by_tag, tuple(masked))


@dataclass
class UidMapper:
    """Consistent replacement UIDs: ``2.25.<128-bit HMAC of the old UID>``.

    Parameters
    ----------
    secret : bytes
        The key; keep one per patient (or per department) to get the same UIDs in every export.
    mapping : dict, optional
        Old -> new UIDs already given (a stored mapping to go on with).
    """

    secret: bytes
    mapping: dict[str, str] = field(default_factory=dict)

    def __call__(self, uid: str) -> str:
        """The replacement of ``uid``; UIDs defined by DICOM itself are returned unchanged."""
        uid = str(uid).strip().rstrip("\x00")
        if not uid or uid.startswith(DICOM_UID_ROOT):
            return uid
        new = self.mapping.get(uid)
        if new is None:
            digest = hmac.new(self.secret, uid.encode("ascii"), hashlib.sha256).digest()
            new = "2.25." + str(int.from_bytes(digest[:16], "big"))
            self.mapping[uid] = new
        return new


@dataclass(frozen=True)
class Pseudonym:
    """What replaces the patient's name and identifier (both Z in the basic profile: a dummy value
    is allowed, so the receiving team can still tell patients apart)."""

    patient_name: str = "ANONYMOUS"
    patient_id: str = ""


@dataclass(frozen=True)
class DeidentifiedDataset:
    """The result of :func:`deidentify_dataset`: the new dataset and warnings for staff."""

    dataset: Dataset
    warnings: tuple[str, ...] = ()


def deidentify_dataset(
    ds: Dataset,
    *,
    uids: UidMapper,
    pseudonym: Pseudonym = Pseudonym(),
    table: ActionTable | None = None,
) -> DeidentifiedDataset:
    """Apply the profile to a copy of ``ds`` (the original is left untouched).

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset, with or without file meta information.
    uids : UidMapper
        The same mapper for every file of one export keeps references consistent.
    pseudonym : Pseudonym
    table : ActionTable, optional
        Defaults to :func:`load_basic_profile`; see :meth:`ActionTable.with_overrides` for options.

    Returns
    -------
    DeidentifiedDataset
    """
    table = table or load_basic_profile()
    out = copy.deepcopy(ds)
    warnings = []
    if str(out.get("BurnedInAnnotation", "")).upper() == "YES":
        warnings.append("the pixels carry burned-in annotations that may identify the patient")
    _apply(out, table, uids)
    _apply_file_meta(out, uids)
    if "PatientName" in out or pseudonym.patient_name:
        out.PatientName = pseudonym.patient_name
    if "PatientID" in out or pseudonym.patient_id:
        out.PatientID = pseudonym.patient_id
    _mark(out, table)
    return DeidentifiedDataset(out, tuple(warnings))


def _apply(ds: Dataset, table: ActionTable, uids: UidMapper) -> None:
    for element in list(ds):
        tag = int(element.tag)
        if element.tag.is_private:
            del ds[tag]
            continue
        action = table.action_for(tag)
        if action == "X":
            del ds[tag]
        elif action == "Z":
            element.value = Sequence() if element.VR == "SQ" else ""
        elif action in ("D", "C"):
            _dummy(element, table, uids)
        elif element.VR == "SQ":  # U on a sequence (U*), K, or not in the table
            for item in element.value:
                _apply(item, table, uids)
        elif element.VR == "UI" and action != "K":
            _remap(element, uids)


def _dummy(element: pydicom.DataElement, table: ActionTable, uids: UidMapper) -> None:
    if element.VR == "SQ":
        # A dummy sequence: the same items, each de-identified in turn.
        for item in element.value:
            _apply(item, table, uids)
    elif element.VR == "UI":
        _remap(element, uids)
    elif element.VR in DUMMY_BY_VR:
        element.value = DUMMY_BY_VR[element.VR]
    elif element.VR in ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"):
        element.value = 0
    else:
        element.value = b"" if element.VR.startswith("O") or element.VR == "UN" else ""


def _remap(element: pydicom.DataElement, uids: UidMapper) -> None:
    value = element.value
    if value in (None, ""):
        return
    if isinstance(value, str):
        element.value = uids(value)
    else:
        element.value = [uids(v) for v in value]


def _apply_file_meta(ds: Dataset, uids: UidMapper) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    if "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = uids(meta.MediaStorageSOPInstanceUID)
    for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                    "ReceivingApplicationEntityTitle", "PrivateInformationCreatorUID", "PrivateInformation"):
        if keyword in meta:
            delattr(meta, keyword)


def _mark(ds: Dataset, table: ActionTable) -> None:
    """PS3.15 E.1.1: say that the identity was removed, and how."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD_DESCRIPTION
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    study_date = pydicom.datadict.tag_for_keyword("StudyDate")
    if table.action_for(study_date) != "K":
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def deidentify_files(
    paths: Iterable[Path],
    out_dir: Path,
    *,
    uids: UidMapper,
    pseudonym: Pseudonym = Pseudonym(),
    table: ActionTable | None = None,
) -> tuple[list[Path], list[str]]:
    """De-identify files into ``out_dir`` as ``<new SOP Instance UID>.dcm``.

    Returns
    -------
    (list of pathlib.Path, list of str)
        The files written, in the order given, and the warnings (each prefixed with the new SOP
        Instance UID, never with the original's name).
    """
    table = table or load_basic_profile()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, warnings = [], []
    for path in paths:
        result = deidentify_dataset(pydicom.dcmread(path), uids=uids, pseudonym=pseudonym, table=table)
        target = out_dir / f"{result.dataset.SOPInstanceUID}.dcm"
        result.dataset.save_as(target, enforce_file_format=False)
        written.append(target)
        warnings.extend(f"{result.dataset.SOPInstanceUID}: {w}" for w in result.warnings)
    return written, warnings


__all__ = [
    "ActionTable",
    "DeidentifiedDataset",
    "Pseudonym",
    "UidMapper",
    "deidentify_dataset",
    "deidentify_files",
    "load_basic_profile",
    "resolve_action",
]
