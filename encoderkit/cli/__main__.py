"""`python -m encoderkit.cli`."""
import sys

from . import main

sys.exit(main())
