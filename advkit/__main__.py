"""``python -m advkit`` is the ``advkit`` command."""
import sys

from .app.cli import main

sys.exit(main())
