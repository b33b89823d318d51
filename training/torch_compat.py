"""Moved to :mod:`edgeskin.report.torch_compat`: the benchmark report's float detector rows need it as well as
training, and the installed ``edgeskin`` may not import ``training``. Kept so that ``training.torch_compat``
imports keep working."""

from edgeskin.report.torch_compat import ensure_torchvision_cpu_ops, greedy_nms

__all__ = ["ensure_torchvision_cpu_ops", "greedy_nms"]
