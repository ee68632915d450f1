"""The intent router shared by training and by every agent that serves it.

Training (`agents/models/router/train.py`) and serving import the same featuriser
(`router_model.featurize`), so the vectors a model was trained on and the vectors it is queried
with cannot drift apart.
"""

from router_model.model import Router

__all__ = ["Router"]
