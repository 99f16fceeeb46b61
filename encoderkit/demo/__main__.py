"""`python -m encoderkit.demo` (`make demo`)."""
import sys

from . import run

sys.exit(run())
