"""Entry point for `python -m resnet_core`."""

import sys

from resnet_core.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
