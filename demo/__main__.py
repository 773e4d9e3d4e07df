"""`python -m demo`: the whole chain on CPU (see `demo.walkthrough`)."""

import sys

from demo.walkthrough import main

if __name__ == "__main__":
    sys.exit(main())
