"""How the tests hold the ``advkit`` command to its promise: a user's mistake is one line, exit status 2."""
from __future__ import annotations

import pytest

from advkit.app.cli import main


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``advkit argv`` in-process; assert exit status 2 and a one-line ``advkit: error:`` message
    without a traceback; return the message."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advkit: error: "), err
    assert "Traceback" not in err
    return lines[0]
