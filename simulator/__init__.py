"""Device simulator and benchmarks: load generators that talk to the gateway as devices do.

Independent of the gateway's code except in ``bench`` (which starts a gateway
and prepares its database), so the generators can be pointed at any server.
"""
