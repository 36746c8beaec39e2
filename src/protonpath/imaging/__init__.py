"""DICOM imaging: reading uploads, receiving over the network, checks, de-identification.

The modules of this package import no Django: they take paths, bytes and plain data and return
dataclasses, so the web side (models, views, tasks) is a thin layer over them.

- :mod:`protonpath.imaging.files` reads an upload (files, folders, zips, DICOMDIR media) safely,
  all or nothing.
- :mod:`protonpath.imaging.scp` is the network receiver (C-ECHO, C-STORE, study-level C-FIND).
- :mod:`protonpath.imaging.checks` tells whether a study is fit for planning, with reasons (in
  English, with a code and params that :mod:`protonpath.imaging.messages`, on the Django side,
  renders in the reader's language).
- :mod:`protonpath.imaging.deidentify` applies the DICOM PS3.15 basic confidentiality profile.
- :mod:`protonpath.imaging.render` turns a slice into an 8-bit image and RTSTRUCT contours into
  pixel polygons for the viewer.
"""
