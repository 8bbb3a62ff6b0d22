"""Synthetic in-context tasks and their ground truth. Imports nothing else of the lab's."""
from . import formats
from .boolean import BooleanFunctions
from .function_classes import DecisionTree, ReluNet
from .graph_search import GraphSearch
from .linear_regression import LinearRegression
from .prompts import Prompts
from .registry import get, names, task_class
from .representation import Representation
from .scan_snap import ScanSnap
from .token_selection import TokenSelection

# TokenSelection and ScanSnap feed the one-layer models of probes.attention_gd and probes.dynamics, not `lab train`,
# so they are not in the registry.
__all__ = ["get", "names", "task_class", "formats", "Prompts", "LinearRegression", "BooleanFunctions", "GraphSearch",
           "DecisionTree", "ReluNet", "Representation",
           "TokenSelection", "ScanSnap"]
