"""The pure domain: the Item aggregate, its events and its errors. No I/O, no frameworks."""
