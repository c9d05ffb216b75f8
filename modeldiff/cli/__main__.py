import sys

from modeldiff.cli.main import main

sys.exit(main())
