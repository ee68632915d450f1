"""`python3 -m classifier_agent` starts the service: the router's HTTP API over the torch model."""

import os
import sys

from classifier_model import Classifier

from classifier_agent.accelerator import accelerator_status
from router_agent.server import serve

status = accelerator_status()
model = Classifier.load(os.environ.get("MODEL_DIR", "/models/classifier"), status["device"])
sys.exit(serve("classifier", model, {"accelerator": status}))
