"""The reproduction study (does Class Regularization help, everything else
equal?): `python -m benchmarks.reproduce --help`. The harness itself is
`training.reproduction`."""

import sys

from training.reproduction import main

if __name__ == "__main__":
    sys.exit(main())
