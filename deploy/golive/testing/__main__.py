import sys

from golive.testing.cli import main

sys.exit(main())
