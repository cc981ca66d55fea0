"""``python -m advkit`` is the ``advkit`` command."""
import sys

from .cli import main

sys.exit(main())
