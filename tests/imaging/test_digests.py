"""Digests that say their algorithm: BLAKE3 for what is received now, SHA-256 for what was
indexed (or sealed in the journal) before, both still recognised."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import blake3
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from protonpath.imaging import digests, ingest
from protonpath.imaging.models import Instance, Transfer
from protonpath.imaging.scp import (
    JOURNAL_SEAL_CREATOR_UID,
    encode_file_header,
    journal_entry_digest,
    journal_seal,
)
from tests.imaging.conftest import PATIENT_BIRTH, PATIENT_NAME, stamp
from tests.imaging.dicomdata import write_ct_series
from tests.imaging.test_django_network import storescu

DATA = b"\x08\x00\x16\x00UI\x1a\x001.2.840.10008.5.1.4.1.1.2\x00" * 1000


def test_a_digest_says_its_algorithm_and_checks_the_bytes_it_was_made_of():
    made = digests.of(DATA)
    assert made == "blake3:" + blake3.blake3(DATA).hexdigest() and len(made) == digests.MAX_LENGTH
    assert digests.matches(made, DATA) and digests.matches(made, memoryview(DATA))
    assert not digests.matches(made, DATA[:-1])
    legacy = "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert digests.matches(legacy, DATA) and not digests.matches(legacy, DATA + b"\0")
    hasher = digests.hasher()
    for start in range(0, len(DATA), 4096):  # fed in pieces, as fragments arrive
        hasher.update(memoryview(DATA)[start : start + 4096])
    assert digests.text(hasher) == made
    for other in ("", "blake3:", "md5:" + hashlib.md5(DATA).hexdigest(), hashlib.sha256(DATA).hexdigest()):
        assert not digests.matches(other, DATA)


def _sealed(dataset: bytes, magic: bytes, digest: bytes) -> bytes:
    seal = magic + struct.pack("<Q", len(dataset)) + digest
    return encode_file_header(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3.4",
        transfer_syntax_uid="1.2.840.10008.1.2.1", seal=seal,
    ) + dataset


def test_journal_files_sealed_with_sha256_before_blake3_are_still_recovered_whole():
    seal, digest = journal_seal(DATA)
    assert seal.startswith(b"PPJ2") and digest == digests.of(DATA)
    assert journal_entry_digest(_sealed(DATA, b"PPJ2", blake3.blake3(DATA).digest())) == digest
    legacy = _sealed(DATA, b"PPJ1", hashlib.sha256(DATA).digest())
    assert journal_entry_digest(legacy) == "sha256:" + hashlib.sha256(DATA).hexdigest()
    # each magic with its own algorithm only, and the bytes must match
    assert journal_entry_digest(_sealed(DATA, b"PPJ1", blake3.blake3(DATA).digest())) is None
    assert journal_entry_digest(_sealed(DATA, b"PPJ2", hashlib.sha256(DATA).digest())) is None
    assert journal_entry_digest(legacy[:-1] + b"\xff") is None
    assert journal_entry_digest(_sealed(DATA, b"PPJ9", blake3.blake3(DATA).digest())) is None
    assert JOURNAL_SEAL_CREATOR_UID.encode() in legacy


@pytest.mark.django_db(transaction=True)
def test_an_instance_indexed_with_sha256_digests_is_a_duplicate_when_sent_again(listener, submitted, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 3, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    assert storescu(listener, paths).returncode == 0
    assert all(i.dataset_digest.startswith("blake3:") and i.file_digest.startswith("blake3:")
               for i in Instance.objects.all())
    for instance in Instance.objects.all():  # as the migration left the rows indexed before
        data = Path(instance.file.path).read_bytes()
        Instance.objects.filter(pk=instance.pk).update(
            file_digest="sha256:" + hashlib.sha256(data).hexdigest(),
            dataset_digest="sha256:" + hashlib.sha256(data[ingest.dataset_offset(data):]).hexdigest(),
        )

    assert storescu(listener, paths).returncode == 0
    stamp(paths[:1], SeriesDescription="edited after sending")
    storescu(listener, paths[:1])

    assert Instance.objects.count() == 3
    second, third = Transfer.objects.order_by("started_at", "id")[1:]
    assert (second.stored, second.duplicates, second.refused) == (0, 3, 0)
    assert (third.stored, third.duplicates, third.refused) == (0, 0, 1)


@pytest.mark.django_db(transaction=True)
def test_the_migration_tags_the_sha256_digests_of_rows_indexed_before():
    executor = MigrationExecutor(connection)
    before = [("imaging", "0002_inbox_reason_code")]
    latest = executor.loader.graph.leaf_nodes("imaging")
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        study = old.get_model("imaging", "Study").objects.create(study_instance_uid="1.2.3")
        series = old.get_model("imaging", "Series").objects.create(study=study, series_instance_uid="1.2.3.1")
        file_hex, dataset_hex = hashlib.sha256(b"file").hexdigest(), hashlib.sha256(b"data set").hexdigest()
        made = old.get_model("imaging", "Instance").objects.create(
            series=series, sop_instance_uid="1.2.3.1.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            file="imaging/ab/old.dcm", size_bytes=4, sha256=file_hex, dataset_sha256=dataset_hex,
            transfer_syntax_uid="1.2.840.10008.1.2.1", received_via="upload",
        )
        unhashed = old.get_model("imaging", "Instance").objects.create(
            series=series, sop_instance_uid="1.2.3.1.2", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            file="imaging/ab/old2.dcm", size_bytes=4, sha256="", dataset_sha256="",
            transfer_syntax_uid="1.2.840.10008.1.2.1", received_via="upload",
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    now = Instance.objects.get(pk=made.pk)
    assert (now.file_digest, now.dataset_digest) == (f"sha256:{file_hex}", f"sha256:{dataset_hex}")
    assert digests.matches(now.file_digest, b"file") and digests.matches(now.dataset_digest, b"data set")
    assert (Instance.objects.get(pk=unhashed.pk).file_digest, Instance.objects.get(pk=unhashed.pk).dataset_digest) == ("", "")
