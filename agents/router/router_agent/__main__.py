"""`python3 -m router_agent` starts the service."""

import sys

from router_agent.server import main

sys.exit(main())
