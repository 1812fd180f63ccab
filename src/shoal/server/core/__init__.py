"""The control plane's decisions, pure: no I/O, no SQL, no clock of their own (they import ``protocol`` only).

Three state machines, each events and facts in, verdicts or actions out, each tested as a table:
``scheduler.plan`` (how many containers, where), ``lifecycle.decide`` (one container's life) and
``inputs.settle`` (what becomes of an input after a report, a crash, a cancel). The store writes what they decide.
"""
