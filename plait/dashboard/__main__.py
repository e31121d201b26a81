import sys

from plait.dashboard.server import main

sys.exit(main())
