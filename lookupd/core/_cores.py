"""Whether to use the compiled cores: not when LOOKUPD_NO_EXTENSIONS is set, nor off CPython."""

import os
import sys

NO_EXTENSIONS = (
    bool(os.environ.get("LOOKUPD_NO_EXTENSIONS")) or sys.implementation.name != "cpython"
)
