"""The projection: events of the log folded onto the read model's views.

fold.py is pure (an item's events onto its view); gap_guard.py decides how far the log
may be read past holes; step.py is one batch (read, fold, one atomic write per
partition); runner.py the loop around it (lock, wake-ups, back-off); child.py runs that
loop in a child process of the API. ports.py names what they need from the stores."""
