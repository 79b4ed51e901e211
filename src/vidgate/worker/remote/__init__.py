"""The poller for remote providers: one loop follows every in-flight provider job.

Remote runs are leased one operation at a time. Nothing sleeps per run, so one process
follows 100,000 provider jobs; a process that dies mid-operation loses only its short
leases. By concept:

* :mod:`~vidgate.worker.remote.poller`: the loop (claims, bounded concurrency, leases);
* :mod:`~vidgate.worker.remote.submit`: submitting exactly once;
* :mod:`~vidgate.worker.remote.follow`: polling, recording changes, copying the video;
* :mod:`~vidgate.worker.remote.outcomes`: failing, cancelling upstream, retrying later.
"""

from vidgate.worker.remote.poller import RemotePoller

__all__ = ["RemotePoller"]
