"""``python -m visiontasks COMMAND ...``: the ``visiontasks`` command (see ``visiontasks/cli.py``)."""
import sys

from visiontasks.cli import main

sys.exit(main())
