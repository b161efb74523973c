"""A test-only model plugin that ends the process when imported (an error naming it, not exit 0)."""

import sys

sys.exit(0)
