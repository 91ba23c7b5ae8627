"""pyproject.toml's metadata in the form setuptools builds without warnings (issue #28: the
table form `license = { text = "MIT" }` printed a 10-line deprecation banner three times in
every `make demo` and `make test`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_license_is_an_spdx_string_and_the_build_needs_a_setuptools_that_reads_it():
    doc = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert doc["project"]["license"] == "MIT"  # an SPDX expression, not a table
    (setuptools,) = [r for r in doc["build-system"]["requires"] if r.startswith("setuptools")]
    major = int(re.search(r">=\s*(\d+)", setuptools).group(1))
    assert major >= 77  # the first setuptools that takes the string form
