"""Device simulator and benchmarks: load generators that talk to the gateway as devices do.

Independent of the gateway's code, so the generators can be pointed at any server:
``bench`` too reaches the gateway it starts only over the wire and through its public
command line (``python -m fleetgate serve``, ``admin ...``) and configuration
(fleetgate.config), and reads the database with plain SQL to check what was stored.
"""
