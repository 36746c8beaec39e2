#!/usr/bin/env bash
# Real DICOM-RT test data for tests/imaging and bench/dicom_ingest.py: the example set that
# dicompyler-core ships in its source distribution on PyPI (one 512x512 CT slice, the RTSTRUCT
# drawn on its 98-slice series, the RTPLAN and the RTDOSE, all of one patient and one frame of
# reference). Fetched once with pip into .cache/; idempotent.
set -euo pipefail
VENV="${VENV:-.venv}"
DEST=.cache/dicom-testdata
DATA="$DEST/dicompyler-core/example_data"
VERSION=0.5.6
if [ -f "$DATA/rtss.dcm" ] && [ -f "$DATA/ct.0.dcm" ] && [ -f "$DATA/rtplan.dcm" ] && [ -f "$DATA/rtdose.dcm" ]; then
    exit 0
fi
mkdir -p "$DEST/sdist"
"$VENV/bin/pip" download --quiet --no-deps --no-binary :all: "dicompyler-core==$VERSION" -d "$DEST/sdist"
rm -rf "$DEST/dicompyler-core.tmp"
mkdir -p "$DEST/dicompyler-core.tmp"
tar -xzf "$DEST/sdist/dicompyler-core-$VERSION.tar.gz" -C "$DEST/dicompyler-core.tmp" \
    --strip-components=3 "dicompyler-core-$VERSION/tests/testdata/example_data"
rm -rf "$DEST/dicompyler-core"
mkdir -p "$DEST/dicompyler-core"
mv "$DEST/dicompyler-core.tmp/example_data" "$DATA"
rm -rf "$DEST/dicompyler-core.tmp"
echo "dicom test data: dicompyler-core $VERSION example set in $DATA"
