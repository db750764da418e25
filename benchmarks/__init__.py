"""Benchmarks for the timekit NTP collector, run with ``python -m benchmarks [--quick]``.

Every benchmark measures timekit and a peer (ntplib, chronyd, plain Python) in the
same run and reports the ratio timekit/peer. All traffic goes to loopback only.
"""
