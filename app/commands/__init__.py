"""The write side: commands, their handlers, the unit of work contract and the bus."""
