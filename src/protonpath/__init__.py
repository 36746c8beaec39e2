"""protonpath: software for a proton therapy department."""

__version__ = "0.1.0"
