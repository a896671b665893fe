import sys

from golive.testing.hosts import main

sys.exit(main())
