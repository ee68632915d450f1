"""`python3 -m triage_agent` starts the service."""

import sys

from triage_agent.server import main

sys.exit(main())
