"""The decision path: what the broker does with one event between the stop
that produced it and the resume that carries out its verdict.

Only the tracer uses it (the trio daemon is the control plane and never sits
on this path).  Modules:

* :mod:`.stack`      the walk of one event through the stack (entry and exit
  walks), static and argument rules; sans-IO.
* :mod:`.authorizer` the connection to one authorizer: line I/O, questions
  waiting for answers, deadlines, default verdicts.
* :mod:`.local`      authorizers living inside the broker process (the
  operator at ``brokerctl attach``'s terminal).
"""
