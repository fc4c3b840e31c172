"""The package as installed: typed, and honest about what it supports."""

from __future__ import annotations

import os
import subprocess
import sys

import ringpipe
from conftest import ENV


def test_type_stubs_and_marker_are_installed():
    here = os.path.dirname(ringpipe.__file__)
    assert os.path.exists(os.path.join(here, "py.typed"))
    assert os.path.exists(os.path.join(here, "_native.pyi"))


def test_free_threaded_python_is_refused_with_a_clear_message():
    code = (
        "import sysconfig\n"
        "real = sysconfig.get_config_var\n"
        "sysconfig.get_config_var = lambda name: 1 if name == 'Py_GIL_DISABLED' else real(name)\n"
        "try:\n"
        "    import ringpipe\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert "free-threaded" in out.stdout, out.stderr


def test_exceptions_form_one_hierarchy():
    for name in ringpipe._errors.__all__:
        assert issubclass(getattr(ringpipe, name), ringpipe.Error)
    assert issubclass(ringpipe.NotFound, FileNotFoundError)
    assert issubclass(ringpipe.PermissionDenied, PermissionError)
    assert issubclass(ringpipe.Timeout, TimeoutError)
    assert issubclass(ringpipe.FrameError, ValueError)
    assert issubclass(ringpipe.RunTimeout, subprocess.TimeoutExpired)
