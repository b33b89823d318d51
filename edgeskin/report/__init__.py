"""The benchmark report of ``edgeskin bench report``: the edge INT8 models against their float baselines.

:mod:`~edgeskin.report.run` runs the jobs (:mod:`~edgeskin.report.latency`, :mod:`~edgeskin.report.peers`,
:mod:`~edgeskin.report.accuracy`, :mod:`~edgeskin.report.cam_fidelity`), each in its own process, and writes
the page (:mod:`~edgeskin.report.render`) and plots (:mod:`~edgeskin.report.plots`). The runtime rows need
nothing beyond the base install; float baselines need ``[train]``, plots ``[eval]``, and what comes from
training (float models, splits, data) an edgeskin source checkout. Nothing here is imported by the runtime.
"""
