"""`python3 -m router_agent` starts the service."""

import os
import sys

from router_agent.accelerator import cuda_status
from router_agent.server import serve
from router_model import Router

router = Router.load(os.environ.get("MODEL_DIR", "/models/router"))
sys.exit(serve("router", router, {"cuda": cuda_status()}))
