"""``python -m docs.reference``: regenerate (or ``--check``) the generated references."""

import sys

from docs.reference.generate import main

sys.exit(main())
